package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// result is one round against one target.
type result struct {
	requests   int
	unexpected int // answers with another status than the scenario's
	elapsed    time.Duration
	p50, p99   time.Duration
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// drive sends POST url with body(i) for i = 0, 1, … from conns closed loops
// (each sends its next request when its last answer is in) until max
// requests or d have passed, and measures each request's latency.
func drive(ctx context.Context, client *http.Client, url string, body func(i int) []byte, want, conns, max int, d time.Duration) result {
	var (
		next       atomic.Int64
		unexpected atomic.Int64
		mu         sync.Mutex
		latencies  = make([]time.Duration, 0, max)
		wg         sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := make([]time.Duration, 0, max/conns+1)
			defer func() {
				mu.Lock()
				latencies = append(latencies, own...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= max || time.Now().After(deadline) {
					return
				}
				t0 := time.Now()
				status, err := post(ctx, client, url, body(i))
				own = append(own, time.Since(t0))
				if err != nil || status != want {
					unexpected.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	r := result{requests: len(latencies), unexpected: int(unexpected.Load()), elapsed: elapsed}
	if n := len(latencies); n > 0 {
		r.p50, r.p99 = latencies[n/2], latencies[min(n-1, n*99/100)]
	}
	return r
}

func post(ctx context.Context, client *http.Client, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	// Read to the end so the connection is reused.
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			IdleConnTimeout:     time.Minute,
		},
	}
}

func exchangeBody(policy, token string) []byte {
	return fmt.Appendf(nil, `{"policy":%q,"token":%q}`, policy, token)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
