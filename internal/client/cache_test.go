package client

import (
	"context"
	"errors"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func awsFor(id string, lifetime time.Duration) *Result {
	return &Result{
		Policy: "deploy", RequestID: id, ExpiresAt: t0.Add(lifetime),
		AWS: &awssts.Answer{AccessKeyID: "ASIA" + id, SecretAccessKey: "se+cr/et=", SessionToken: "to+ken/==", Expiration: t0.Add(lifetime)},
	}
}

func TestCacheRefreshMargin(t *testing.T) {
	tests := []struct {
		lifetime, later time.Duration
		fresh           bool
	}{
		{time.Hour, 0, true},
		{time.Hour, 44 * time.Minute, true},
		{time.Hour, 45 * time.Minute, false}, // botocore's 15-minute window opens: renew
		{time.Hour, 61 * time.Minute, false},
		// 15 minutes: botocore asks on every use from the start; the cache
		// answers from itself for half the lifetime.
		{15 * time.Minute, 0, true},
		{15 * time.Minute, 7 * time.Minute, true},
		{15 * time.Minute, 7*time.Minute + 30*time.Second, false},
		{2 * time.Second, time.Second - time.Millisecond, true},
		{2 * time.Second, time.Second, false},
	}
	for _, tt := range tests {
		e, err := NextEntry(nil, awsFor("r1", tt.lifetime), "tok", t0)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Fresh("deploy", t0.Add(tt.later)); got != tt.fresh {
			t.Errorf("a %s credential after %s: fresh %t, want %t (margin %s)", tt.lifetime, tt.later, got, tt.fresh, e.RefreshMargin())
		}
	}
	e, _ := NextEntry(nil, awsFor("r1", time.Hour), "tok", t0)
	if e.Fresh("other", t0) || (*CacheEntry)(nil).Fresh("deploy", t0) {
		t.Error("an entry of another policy, or none, is fresh")
	}
	if !e.Unexpired(t0.Add(59*time.Minute)) || e.Unexpired(t0.Add(time.Hour)) {
		t.Error("Unexpired is wrong at the expiry's edges")
	}
}

func TestCacheFileRoundTripsAndStaysPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if e, err := ReadCache(path); e != nil || err != nil {
		t.Fatalf("an absent cache: %v, %v", e, err)
	}
	e, _ := NextEntry(nil, awsFor("r1", time.Hour), "tok-1", t0)
	if err := WriteCache(path, e); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCache(path)
	if err != nil || got == nil || got.Credential != e.Credential || got.Credential.SecretAccessKey != "se+cr/et=" {
		t.Fatalf("read back %+v, %v", got, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %v", st.Mode().Perm())
	}
	// The next credential keeps the history and the spent tokens.
	next, _ := NextEntry(got, awsFor("r2", time.Hour), "tok-2", t0.Add(50*time.Minute))
	if len(next.History) != 2 || next.History[1].RequestID != "r2" || !next.Spent("tok-1") || !next.Spent("tok-2") || next.Spent("tok-3") {
		t.Errorf("next entry history %+v, spent %v", next.History, next.SpentTokens)
	}
	for _, d := range next.SpentTokens {
		if strings.Contains(d, "tok") {
			t.Error("a spent token is stored, not its digest")
		}
	}
	// What cannot be used is a miss.
	for _, bad := range []string{"{", `{"version":2}`, `{"version":1,"policy":"p","credential":{"AccessKeyId":"x"}}`} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if e, err := ReadCache(path); e != nil || err != nil {
			t.Errorf("cache %q: %v, %v; want a miss", bad, e, err)
		}
	}
	if _, err := NextEntry(nil, tokenResult(), "t", t0); err == nil {
		t.Error("a token grant became a credential_process entry")
	}
}

func TestCacheLockSerialisesAndTakesOverAStaleLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	var mu sync.Mutex
	inside, most := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := WithCacheLock(context.Background(), path, func() error {
				mu.Lock()
				inside++
				most = max(most, inside)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				inside--
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("%d holders at once", most)
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Error("the lock file outlived its holder")
	}
	// A lock left by a process that died long ago.
	if err := os.WriteFile(path+".lock", []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-LockStale - time.Minute)
	if err := os.Chtimes(path+".lock", old, old); err != nil {
		t.Fatal(err)
	}
	ran := false
	if err := WithCacheLock(context.Background(), path, func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("a stale lock was not taken over: %v", err)
	}
	// A live lock and a context that ends.
	if err := os.WriteFile(path+".lock", []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := WithCacheLock(ctx, path, func() error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting on a held lock past the context: %v", err)
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func TestRefreshExchangesOnlyWhenTheMarginIsReached(t *testing.T) {
	clock := &fakeClock{t0}
	var exchanged []string
	fail := error(nil)
	r := &Refresh{
		Cache:  filepath.Join(t.TempDir(), "c.json"),
		Policy: "deploy",
		Now:    clock.Now,
		NextToken: func(_ context.Context, spent func(string) bool) (string, error) {
			tok := "tok-" + string(rune('a'+len(exchanged)))
			if spent(tok) {
				t.Fatalf("NextToken offered spent token %s", tok)
			}
			return tok, nil
		},
		Exchange: func(_ context.Context, token string) (*Result, error) {
			if fail != nil {
				return nil, fail
			}
			exchanged = append(exchanged, token)
			res := awsFor("r"+token, time.Hour)
			res.AWS.Expiration = clock.now.Add(time.Hour)
			return res, nil
		},
	}
	var warnings []string
	r.Warn = func(s string) { warnings = append(warnings, s) }
	ctx := context.Background()
	keys := func() string {
		e, err := r.Credential(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return e.Credential.AccessKeyID
	}
	steps := []struct {
		at        time.Duration
		exchanges int
	}{{0, 1}, {time.Minute, 1}, {44 * time.Minute, 1}, {46 * time.Minute, 2}, {50 * time.Minute, 2}, {90 * time.Minute, 2}, {92 * time.Minute, 3}}
	for _, s := range steps {
		clock.now = t0.Add(s.at)
		keys()
		if len(exchanged) != s.exchanges {
			t.Errorf("at %s: %d exchanges, want %d", s.at, len(exchanged), s.exchanges)
		}
	}
	// A failed refresh while the held credential works hands it back.
	fail = errors.New("broker down")
	clock.now = t0.Add(92*time.Minute + 50*time.Minute)
	held := keys()
	if held != "ASIArtok-c" || len(warnings) != 1 || !strings.Contains(warnings[0], "broker down") {
		t.Errorf("a failed refresh: key %s, warnings %q", held, warnings)
	}
	// Once it has expired, the failure is the answer.
	clock.now = t0.Add(4 * time.Hour)
	if _, err := r.Credential(ctx); err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Errorf("a failed refresh of an expired credential: %v", err)
	}
	// A cache of another policy is refused, never overwritten.
	other := *r
	other.Policy = "other"
	if _, err := other.Credential(ctx); err == nil || !strings.Contains(err.Error(), `holds a credential of policy "deploy"`) {
		t.Errorf("another policy's cache: %v", err)
	}
}

func TestNextTokenNeverOffersASpentGitLabToken(t *testing.T) {
	ctx := context.Background()
	env := envOf(map[string]string{"FERRY_ID_TOKEN": "one", "FERRY_ID_TOKEN_2": "two", "FERRY_ID_TOKEN_3": "three", "FERRY_ID_TOKEN_5": "five"})
	spent := map[string]bool{}
	var got []string
	for {
		tok, err := NextToken(ctx, env, "", "ferry", nil, func(s string) bool { return spent[s] })
		if err != nil {
			if !errors.Is(err, ErrTokensSpent) || !strings.Contains(err.Error(), "declare FERRY_ID_TOKEN_4") {
				t.Errorf("when all are spent: %v", err)
			}
			break
		}
		got = append(got, tok)
		spent[tok] = true
	}
	// _5 is not reached: the list is the consecutive ones.
	if !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Errorf("tokens offered %v", got)
	}

	file := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := NextToken(ctx, noEnv, file, "ferry", nil, func(string) bool { return false }); err != nil || tok != "from-file" {
		t.Errorf("token file: %q, %v", tok, err)
	}
	if _, err := NextToken(ctx, noEnv, file, "ferry", nil, func(string) bool { return true }); !errors.Is(err, ErrTokensSpent) {
		t.Errorf("a spent token file: %v", err)
	}
	if _, err := NextToken(ctx, envOf(map[string]string{"GITLAB_CI": "true"}), "", "ferry", nil, func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "FERRY_ID_TOKEN is unset") {
		t.Errorf("no token at all: %v", err)
	}
}

func TestCommandLineSurvivesShAndIniReaders(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	argv := []string{"/opt/run ner/ferry", "exchange", "--url", "https://f.example/x?y", "--cache", "/t/a #b;c/$HOME/`x`/\"q\"/it's/c.json"}
	line, err := CommandLine(argv)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(line, " #") || strings.Contains(line, " ;") || (strings.HasPrefix(line, `"`) && strings.HasSuffix(line, `"`)) {
		t.Errorf("%s would be cut or unquoted by aws-sdk-go-v2's ini reader", line)
	}
	// sh -c, as aws-sdk-go-v2 runs it: print each argument on a line.
	out, err := exec.Command(sh, "-c", `printf '%s\n' `+line).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); !slices.Equal(got, argv) {
		t.Errorf("sh split %q into %q, want %q", line, got, argv)
	}
	if _, err := CommandLine([]string{"a\nb"}); err == nil {
		t.Error("a newline was written into a config line")
	}
}

func TestWriteProfileKeepsOtherSectionsAndRefusesForeignOnes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(file, []byte("[profile mine]\nregion = eu-west-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteProfile(file, "deploy", "deploy-prod", "ferry exchange --cache c", ""); err != nil {
		t.Fatal(err)
	}
	if err := WriteProfile(file, "deploy", "deploy-prod", "ferry exchange --cache c2", "us-east-1"); err != nil {
		t.Fatalf("rewriting Ferry's own section: %v", err)
	}
	data, _ := os.ReadFile(file)
	text := string(data)
	if strings.Count(text, "[profile deploy]") != 1 || !strings.Contains(text, "credential_process = ferry exchange --cache c2\nregion = us-east-1\n") ||
		!strings.Contains(text, "[profile mine]\nregion = eu-west-1\n") {
		t.Errorf("config file:\n%s", text)
	}
	if err := WriteProfile(file, "deploy", "other-policy", "x", ""); err == nil || !strings.Contains(err.Error(), `for policy "deploy-prod"`) {
		t.Errorf("another policy's profile: %v", err)
	}
	if err := WriteProfile(file, "mine", "deploy-prod", "x", ""); err == nil || !strings.Contains(err.Error(), "Ferry did not write") {
		t.Errorf("a profile Ferry did not write: %v", err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v", st.Mode().Perm())
	}
	for _, bad := range []string{"", "a b", "x]", strings.Repeat("p", 65)} {
		if CheckProfileName(bad) == nil {
			t.Errorf("profile name %q accepted", bad)
		}
	}
}
