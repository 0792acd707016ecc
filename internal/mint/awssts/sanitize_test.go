package awssts_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/ferry-broker/ferry/internal/mint/awssts"
)

// The patterns and limits as the STS API reference states them; Go's \w is
// ASCII-only, as AWS's is.
var (
	stsNamePattern     = regexp.MustCompile(`^[\w+=,.@-]*$`)
	stsTagKeyPattern   = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$`)
	stsTagValuePattern = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
)

// hashed is what a cut value ends with: "-" and 8 hex digits of the SHA-256
// of the raw input.
func hashed(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return "-" + hex.EncodeToString(sum[:4])
}

func TestSanitizeSessionName(t *testing.T) {
	long := "acme/" + strings.Repeat("a", 995)
	tests := []struct {
		name, in, want string
	}{
		{"a repository path keeps owner and name readable", "acme/app", "acme@app"},
		{"a nested GitLab path maps every slash", "group/sub.group/project", "group@sub.group@project"},
		{"every allowed character passes unchanged", "Az09_+=,.@-", "Az09_+=,.@-"},
		{"colons and spaces become dashes", "repo:acme/app:ref main", "repo-acme@app-ref-main"},
		{"each non-ASCII letter becomes one dash", "café/日本", "caf-@--"},
		{"an emoji becomes one dash", "ship🚀it", "ship-it"},
		{"invalid UTF-8 bytes become dashes", "a\xff\xfeb", "a--b"},
		{"line breaks cannot inject anything", "a\r\nb\x00c", "a--b-c"},
		{"an empty name is padded to two characters", "", "__"},
		{"a one-character name is padded", "x", "x_"},
		{"a single disallowed character is kept as a dash and padded", "/", "@_"},
		{"64 characters are kept whole", strings.Repeat("b", 64), strings.Repeat("b", 64)},
		{"65 characters are cut and end in a hash of the input", strings.Repeat("b", 65), strings.Repeat("b", 55) + hashed(strings.Repeat("b", 65))},
		{"a 1000-character repository name is cut, never refused", long, "acme@" + strings.Repeat("a", 50) + hashed(long)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := awssts.SanitizeSessionName(tt.in); got != tt.want {
				t.Errorf("SanitizeSessionName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestLongNamesThatShareAPrefixStayDistinct(t *testing.T) {
	prefix := strings.Repeat("org/very-long-repository-name", 4)
	a := awssts.SanitizeSessionName(prefix + "@run-1")
	b := awssts.SanitizeSessionName(prefix + "@run-2")
	if a == b {
		t.Fatalf("two names differing after the cut both became %q", a)
	}
}

func TestSanitizeSourceIdentity(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"a reserved aws: prefix is defused", "aws:federated", "aws-federated"},
		{"the reserved prefix is caught in any case", "AwS:x", "AwS-x"},
		{"an actor name passes unchanged", "octocat", "octocat"},
		{"a bot actor loses its brackets", "dependabot[bot]", "dependabot-bot-"},
		{"a subject claim stays readable", "repo:acme/app:environment:production", "repo-acme@app-environment-production"},
		{"a single character is padded", "a", "a_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := awssts.SanitizeSourceIdentity(tt.in); got != tt.want {
				t.Errorf("SanitizeSourceIdentity(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSanitizeTags(t *testing.T) {
	longKey := strings.Repeat("k", 200)
	longValue := strings.Repeat("v", 300)
	astral := strings.Repeat("𝐀", 200) // a letter outside the BMP: two UTF-16 units each
	many := make([]awssts.Tag, 60)
	for i := range many {
		many[i] = awssts.Tag{Key: fmt.Sprintf("k%02d", i), Value: "v"}
	}

	tests := []struct {
		name string
		in   []awssts.Tag
		want []awssts.Tag
	}{
		{"no tags stay no tags", nil, nil},
		{
			"repository and ref pass unchanged, slashes and all",
			[]awssts.Tag{{"repository", "acme/app"}, {"ref", "refs/heads/main"}, {"sub", "repo:acme/app:ref:refs/heads/main"}},
			[]awssts.Tag{{"repository", "acme/app"}, {"ref", "refs/heads/main"}, {"sub", "repo:acme/app:ref:refs/heads/main"}},
		},
		{
			"letters of any script are kept",
			[]awssts.Tag{{"actor", "José"}, {"环境", "生产"}},
			[]awssts.Tag{{"actor", "José"}, {"环境", "生产"}},
		},
		{
			"symbols and brackets become underscores",
			[]awssts.Tag{{"actor", "dependabot[bot]"}, {"msg", "ship 🚀 #1!"}},
			[]awssts.Tag{{"actor", "dependabot_bot_"}, {"msg", "ship _ _1_"}},
		},
		{
			"unicode spaces become plain spaces and control characters underscores",
			[]awssts.Tag{{"ref", "a\u00a0b\u2028c\td\ne"}},
			[]awssts.Tag{{"ref", "a b c_d_e"}},
		},
		{
			"invalid UTF-8 becomes underscores",
			[]awssts.Tag{{"ref\xff", "x\xfe"}},
			[]awssts.Tag{{"ref_", "x_"}},
		},
		{
			"an empty value is allowed",
			[]awssts.Tag{{"environment", ""}},
			[]awssts.Tag{{"environment", ""}},
		},
		{
			"a tag without a key is dropped",
			[]awssts.Tag{{"", "orphan"}, {"ref", "main"}},
			[]awssts.Tag{{"ref", "main"}},
		},
		{
			"keys differing only in case keep the first",
			[]awssts.Tag{{"Ref", "first"}, {"ref", "second"}, {"REF", "third"}},
			[]awssts.Tag{{"Ref", "first"}},
		},
		{
			"keys that collide after sanitising keep the first",
			[]awssts.Tag{{"a#b", "1"}, {"a!b", "2"}},
			[]awssts.Tag{{"a_b", "1"}},
		},
		{
			"the reserved aws: key prefix is defused in any case",
			[]awssts.Tag{{"aws:PrincipalTag", "x"}, {"AWS:y", "z"}},
			[]awssts.Tag{{"aws_PrincipalTag", "x"}, {"AWS_y", "z"}},
		},
		{
			"a Unicode look-alike of the aws: prefix is defused too",
			[]awssts.Tag{{"awſ:x", "v"}},
			[]awssts.Tag{{"awſ_x", "v"}},
		},
		{
			"a value may start with aws: because only keys are reserved",
			[]awssts.Tag{{"k", "aws:v"}},
			[]awssts.Tag{{"k", "aws:v"}},
		},
		{
			"an over-long key and value are cut and end in a hash",
			[]awssts.Tag{{longKey, longValue}},
			[]awssts.Tag{{strings.Repeat("k", 119) + hashed(longKey), strings.Repeat("v", 247) + hashed(longValue)}},
		},
		{
			"length counts UTF-16 units, as AWS does",
			[]awssts.Tag{{"k", astral}},
			[]awssts.Tag{{"k", strings.Repeat("𝐀", 123) + hashed(astral)}},
		},
		{"only the first 50 tags are kept", many, many[:50]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := awssts.SanitizeTags(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SanitizeTags(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzSanitizeSessionName(f *testing.F) {
	for _, s := range []string{"", "a", "acme/app", "aws:x", "AWS:", "café", "\xff", "a\nb", strings.Repeat("x/", 100), strings.Repeat("日", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, fn := range []struct {
			name string
			fn   func(string) string
		}{{"SanitizeSessionName", awssts.SanitizeSessionName}, {"SanitizeSourceIdentity", awssts.SanitizeSourceIdentity}} {
			got := fn.fn(s)
			if !stsNamePattern.MatchString(got) || len(got) < 2 || len(got) > 64 {
				t.Fatalf("%s(%q) = %q: not 2..64 characters of [\\w+=,.@-]", fn.name, s, got)
			}
			if strings.HasPrefix(strings.ToLower(got), "aws:") {
				t.Fatalf("%s(%q) = %q starts with the reserved aws:", fn.name, s, got)
			}
			if again := fn.fn(got); again != got {
				t.Fatalf("%s is not idempotent: %q -> %q -> %q", fn.name, s, got, again)
			}
		}
	})
}

func FuzzSanitizeTags(f *testing.F) {
	f.Add("repository", "acme/app", "Repository", "other")
	f.Add("aws:x", "", "AWS:X", "v")
	f.Add("", "v", "\xff", "\xfe")
	f.Add(strings.Repeat("𝐀", 100), strings.Repeat("é", 300), "k\u2028", "v\u00a0")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		in := []awssts.Tag{{k1, v1}, {k2, v2}, {strings.ToUpper(k1), v2}, {k2 + k1, v1 + v2}}
		got := awssts.SanitizeTags(in)
		assertValidTags(t, in, got)
		if again := awssts.SanitizeTags(got); !reflect.DeepEqual(again, got) {
			t.Fatalf("SanitizeTags is not idempotent: %q -> %q -> %q", in, got, again)
		}
	})
}

func assertValidTags(t *testing.T, in, got []awssts.Tag) {
	t.Helper()
	if len(got) > 50 {
		t.Fatalf("SanitizeTags(%q) kept %d tags, more than 50", in, len(got))
	}
	for i, tag := range got {
		if !utf8.ValidString(tag.Key) || !stsTagKeyPattern.MatchString(tag.Key) || len(utf16.Encode([]rune(tag.Key))) > 128 {
			t.Fatalf("SanitizeTags(%q): key %q is not 1..128 allowed characters", in, tag.Key)
		}
		if !utf8.ValidString(tag.Value) || !stsTagValuePattern.MatchString(tag.Value) || len(utf16.Encode([]rune(tag.Value))) > 256 {
			t.Fatalf("SanitizeTags(%q): value %q is not 0..256 allowed characters", in, tag.Value)
		}
		if r := []rune(tag.Key); len(r) >= 4 && strings.EqualFold(string(r[:4]), "aws:") {
			t.Fatalf("SanitizeTags(%q): key %q starts with the reserved aws:", in, tag.Key)
		}
		for _, earlier := range got[:i] {
			if strings.EqualFold(earlier.Key, tag.Key) {
				t.Fatalf("SanitizeTags(%q): keys %q and %q are the same ignoring case", in, earlier.Key, tag.Key)
			}
		}
	}
}
