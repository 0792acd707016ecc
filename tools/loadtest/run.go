package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/devissuer"
)

// scenario is one broker path, measured against the bare server on the
// same tokens.
type scenario struct {
	name   string
	what   string
	policy string
	broker string // which target: a broker ("memory", "memory-10k", "redis") or the durable reference
	fresh  bool   // every request needs an unused token (an allowed exchange spends it)
	status int    // the answer the broker must give
}

var allScenarios = []scenario{
	{"deny", "refused on a claim: verify, policy, audit, nothing minted", "deploy", "memory", false, http.StatusForbidden},
	{durableReference, "the bare server plus one fsynced audit record: no claim checked, nothing decided", "deploy", durableReference, false, http.StatusOK},
	{durableSigning, "the same, signing an ES256 token before the record: the least a token grant does", "deploy", durableSigning, false, http.StatusOK},
	{"token", "allowed, Ferry-signed ES256 token: verify, policy, replay, sign, audit", "artifacts", "memory", true, http.StatusOK},
	{"aws", "allowed, AWS credentials from an in-memory STS", "cloud", "memory", true, http.StatusOK},
	{"token-redis", "the token scenario with replay.store: redis", "artifacts", "redis", true, http.StatusOK},
	{"deny-10k", "the deny scenario with 10,000 more policies loaded", "deploy", "memory-10k", false, http.StatusForbidden},
}

// durableReference and durableSigning name the scenarios, and the
// targets, of the bare server held to the durability contract
// (durableBareServer), the second signing a token too. They run in this
// process, as the bare server does, each with its audit log where the
// brokers keep theirs.
const (
	durableReference = "bare-audit"
	durableSigning   = "bare-audit-sign"
)

func isReference(target string) bool { return target == durableReference || target == durableSigning }

// extraPolicies is how many more policies each broker loads.
var extraPolicies = map[string]int{"memory-10k": 10000}

func run(ctx context.Context, o options, w io.Writer) error {
	var chosen []scenario
	for _, name := range strings.Split(o.scenarios, ",") {
		i := slices.IndexFunc(allScenarios, func(s scenario) bool { return s.name == strings.TrimSpace(name) })
		if i < 0 {
			return fmt.Errorf("unknown scenario %q", name)
		}
		chosen = append(chosen, allScenarios[i])
	}
	if _, err := os.Stat(o.ferry); err != nil {
		return fmt.Errorf("ferry binary: %w (run `make build`, or pass -ferry)", err)
	}
	dir, err := os.MkdirTemp("", "ferry-loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	gh, err := devissuer.Start(devissuer.Options{Flavor: devissuer.GitHub})
	if err != nil {
		return err
	}
	defer gh.Close()
	sts, err := serve(ctx, fakeSTS())
	if err != nil {
		return err
	}
	bare, err := serve(ctx, bareServer(gh.Key().Public()))
	if err != nil {
		return err
	}
	targets := map[string]string{} // scenario.broker → base URL
	for _, s := range chosen {
		if !isReference(s.broker) {
			continue
		}
		log, err := referenceLog(dir, s.broker, o.audit)
		if err != nil {
			return err
		}
		defer log.Close()
		var signer jose.Signer
		if s.broker == durableSigning {
			if signer, _, err = newReferenceSigner(); err != nil {
				return err
			}
		}
		if targets[s.broker], err = serve(ctx, durableBareServer(gh.Key().Public(), log, signer)); err != nil {
			return err
		}
	}
	env := []string{"AWS_ENDPOINT_URL_STS=" + sts, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=loadtest", "AWS_SECRET_ACCESS_KEY=loadtest",
		"AWS_EC2_METADATA_DISABLED=true"}
	brokers := map[string]*broker{}
	for _, s := range chosen {
		if brokers[s.broker] != nil || isReference(s.broker) {
			continue
		}
		replay := "{store: memory}"
		var helperCPU func() time.Duration
		if s.broker == "redis" {
			addr, stop, cpu, err := startRedis(ctx)
			if err != nil {
				return err
			}
			helperCPU = cpu
			defer stop()
			replay = fmt.Sprintf("{store: redis, redis_url: %q}", "redis://"+addr+"/0")
		}
		auditPath := "./audit.log"
		if o.audit == "stdout" {
			auditPath = "-"
		}
		cfg, err := writeConfig(dir+"/"+s.broker, gh.URL(), replay, auditPath, extraPolicies[s.broker])
		if err != nil {
			return err
		}
		b, err := startBroker(ctx, o.ferry, cfg, env)
		if err != nil {
			return err
		}
		defer b.stop()
		b.helperCPU = helperCPU
		brokers[s.broker] = b
		targets[s.broker] = b.url
	}

	// Tokens are signed before the clock starts: that is the CI
	// platform's cost, not the broker's. A refused token is not spent, so
	// the deny scenario reuses a few; every allowed exchange spends its
	// token for its policy and replay store, so those need one each, but
	// the allow scenarios can share them (different policy or store).
	fmt.Fprintf(w, "signing tokens… ")
	t0 := time.Now()
	denied, err := signTokens(gh, 256, map[string]any{"ref": "refs/heads/dev"})
	if err != nil {
		return err
	}
	var allowed []string
	if slices.ContainsFunc(chosen, func(s scenario) bool { return s.fresh }) {
		if allowed, err = signTokens(gh, o.rounds*o.maxRequests, nil); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "%d in %s\n\n", len(denied)+len(allowed), time.Since(t0).Round(time.Millisecond))

	client := newClient(o.conns)
	// Warm both sides: connections, issuer keys, first-use code paths.
	for _, b := range brokers {
		drive(ctx, client, b.url+"/v1/exchange", func(i int) []byte { return exchangeBody("deploy", denied[i%len(denied)]) }, http.StatusForbidden, o.conns, 500, o.round)
	}
	for _, name := range []string{durableReference, durableSigning} {
		if ref, ok := targets[name]; ok {
			drive(ctx, client, ref+"/v1/exchange", func(i int) []byte { return exchangeBody("deploy", denied[i%len(denied)]) }, http.StatusOK, o.conns, 500, o.round)
		}
	}
	drive(ctx, client, bare+"/v1/exchange", func(i int) []byte { return exchangeBody("deploy", denied[i%len(denied)]) }, http.StatusOK, o.conns, 500, o.round)

	for _, name := range slices.Sorted(maps.Keys(brokers)) {
		fmt.Fprintf(w, "broker %-10s resident %s after warm-up (%d policies)\n", name, brokers[name].rss(), len(policies)+extraPolicies[name])
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tround\tbare req/s\tbare p50\tbare p99\ttarget req/s\ttarget p50\ttarget p99\tferry CPU/req\trecords/fsync\tratio\t")
	type summary struct {
		s          scenario
		ratios     []float64
		p99s       []time.Duration
		cpus       []time.Duration
		helperCPUs []time.Duration
		unexpected int
	}
	var sums []summary
	for _, s := range chosen {
		sum := summary{s: s}
		for r := range o.rounds {
			if ctx.Err() != nil {
				break
			}
			tokens := denied
			body := func(i int) []byte { return exchangeBody(s.policy, tokens[i%len(tokens)]) }
			if s.fresh {
				tokens = allowed[r*o.maxRequests : (r+1)*o.maxRequests]
			}
			target := targets[s.broker]
			var fb, bb result
			var cpu, helperCPU time.Duration
			var perFsync float64
			ferry := func() {
				before := readCounters(ctx, client, target)
				helperBefore := brokers[s.broker].helperTime()
				fb = drive(ctx, client, target+"/v1/exchange", body, s.status, o.conns, o.maxRequests, o.round)
				helperCPU = perRequestCPU(helperBefore, brokers[s.broker].helperTime(), fb.requests)
				cpu, perFsync = perRequest(before, readCounters(ctx, client, target), fb.requests)
			}
			// Alternate which goes first, so neither always follows the
			// other's leftovers (GC, disk writeback).
			if r%2 == 0 {
				bb = drive(ctx, client, bare+"/v1/exchange", body, http.StatusOK, o.conns, o.maxRequests, o.round)
				ferry()
			} else {
				ferry()
				bb = drive(ctx, client, bare+"/v1/exchange", body, http.StatusOK, o.conns, o.maxRequests, o.round)
			}
			ratio := fb.rps() / bb.rps()
			sum.ratios = append(sum.ratios, ratio)
			sum.p99s = append(sum.p99s, fb.p99)
			sum.cpus = append(sum.cpus, cpu)
			sum.helperCPUs = append(sum.helperCPUs, helperCPU)
			sum.unexpected += fb.unexpected + bb.unexpected
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%.2f\t\n", s.name, r+1, bb.rps(), ms(bb.p50), ms(bb.p99), fb.rps(), ms(fb.p50), ms(fb.p99), us(cpu), perCommit(perFsync), ratio)
		}
		sums = append(sums, sum)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nmedians over rounds (ratio = target req/s ÷ bare req/s in the same round; the target is the scenario's broker, or for bare-audit and bare-audit-sign the durable bare server):")
	if o.audit == "stdout" {
		fmt.Fprintln(w, "  audit log to stdout: no fsync")
	} else {
		fmt.Fprintln(w, "  audit log to a file, fsynced before each answer")
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var failed []string
	var memoryToken, redisToken, deny, deny10k, durable, durableSign float64
	cpus, helperCPUs := map[string]time.Duration{}, map[string]time.Duration{}
	for _, sum := range sums {
		if len(sum.ratios) == 0 {
			continue
		}
		ratio, p99 := median(sum.ratios), medianDur(sum.p99s)
		cpus[sum.s.name] = medianDur(sum.cpus)
		if h := medianDur(sum.helperCPUs); h > 0 {
			helperCPUs[sum.s.name] = h
		}
		cpu := "CPU " + us(cpus[sum.s.name]) + " a request"
		if h := helperCPUs[sum.s.name]; h > 0 {
			cpu += " (redis-server " + us(h) + ")"
		}
		fmt.Fprintf(tw, "  %s\tratio %.2f\tp99 %s\t%s\t%s\n", sum.s.name, ratio, ms(p99), cpu, sum.s.what)
		if sum.unexpected > 0 {
			failed = append(failed, fmt.Sprintf("%s: %d answers with an unexpected status", sum.s.name, sum.unexpected))
		}
		switch sum.s.name {
		case "token":
			memoryToken = ratio
		case "token-redis":
			redisToken = ratio
		case "deny":
			deny = ratio
		case "deny-10k":
			deny10k = ratio
		case durableReference:
			durable = ratio
		case durableSigning:
			durableSign = ratio
		}
	}
	tw.Flush()
	if memoryToken > 0 && redisToken > 0 {
		fmt.Fprintf(w, "  redis replay store costs %.0f%% against memory (token scenario ratios)%s%s\n", 100*(1-redisToken/memoryToken), cpuRatio(cpus, "token-redis", "token"), withHelper(cpus, helperCPUs, "token-redis", "token", "redis-server"))
	}
	if deny > 0 && durable > 0 {
		fmt.Fprintf(w, "  the durable bare server reaches %.2f of the bare server: the most the audit contract leaves here; deny reaches %.2f of it\n", durable, deny/durable)
	}
	if memoryToken > 0 && durableSign > 0 {
		fmt.Fprintf(w, "  signing too, it reaches %.2f: the most a token grant can; token reaches %.2f of it\n", durableSign, memoryToken/durableSign)
	}
	if deny > 0 && deny10k > 0 {
		fmt.Fprintf(w, "  10,000 policies cost %.2fx the request cost of %d (deny scenario ratios)%s\n", deny/deny10k, len(policies), cpuRatio(cpus, "deny-10k", "deny"))
	}
	for _, name := range slices.Sorted(maps.Keys(brokers)) {
		fmt.Fprintf(w, "  broker %-10s resident %s at the end\n", name, brokers[name].rss())
	}
	fmt.Fprintf(w, "\nmachine: %d CPUs, %s/%s, load %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, loadAverage())
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return ctx.Err()
}

// referenceLog is a durable reference's audit log: a fresh fsynced file
// in dir, or, when the brokers log to stdout, a log that writes nowhere.
func referenceLog(dir, name, mode string) (*audit.Log, error) {
	if mode == "stdout" {
		return audit.New(io.Discard, audit.Genesis), nil
	}
	return audit.Open(filepath.Join(dir, name+".log"))
}

// signTokens signs n GitHub push tokens for acme/app, edited, living an
// hour so a long run cannot outlast them, on every CPU.
func signTokens(gh *devissuer.Issuer, n int, edit map[string]any) ([]string, error) {
	out := make([]string, n)
	errs := make([]error, runtime.NumCPU())
	var wg sync.WaitGroup
	for w := range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += runtime.NumCPU() {
				c, err := devissuer.SampleClaims("github-push-main")
				if err != nil {
					errs[w] = err
					return
				}
				c["exp"] = time.Now().Add(time.Hour).Unix()
				for k, v := range edit {
					c[k] = v
				}
				if out[i], err = gh.Sign(c); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// withHelper says what scenario a's CPU a request is to b's when the CPU
// of a's helper process (its redis-server, on the same cores) is counted
// too, when all three are known.
func withHelper(cpus, helpers map[string]time.Duration, a, b, helper string) string {
	if cpus[a] <= 0 || cpus[b] <= 0 || helpers[a] <= 0 {
		return ""
	}
	return fmt.Sprintf("; %s adds %s a request, %.2fx with it", helper, us(helpers[a]), float64(cpus[a]+helpers[a])/float64(cpus[b]))
}

// cpuRatio says what scenario a's CPU a request is to b's, when both
// brokers reported it.
func cpuRatio(cpus map[string]time.Duration, a, b string) string {
	if cpus[a] <= 0 || cpus[b] <= 0 {
		return ""
	}
	return fmt.Sprintf("; %.2fx by CPU a request", float64(cpus[a])/float64(cpus[b]))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianDur(xs []time.Duration) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}
