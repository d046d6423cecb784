// hsload drives a server with a FULL TLS handshake per request: what a client without a TLS
// session cache costs a webhook (the API server after its kept-alive connections were
// dropped). h2load and wrk also reconnect per request with Connection: close, but resume their
// TLS session, which skips the certificate and the server's signature.
//
// Each of -c workers, until -d has passed after a -w warm-up: dial, handshake (ALPN http/1.1,
// no session cache, the certificate not verified: a load tool, loopback only), send one
// request with Connection: close, read the answer to the end, close. Latency runs from the
// dial to the end of the answer. One line of key=value pairs is printed:
//
//	requests ok non2xx errors rps mean_ms p50_ms p99_ms max_ms
//
//	hsload -c 16 -d 5s -w 1s -body payload.json https://127.0.0.1:PORT/validate
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"
)

type outcome struct {
	latency time.Duration
	status  int // 0: the exchange failed
}

// exchange makes one connection, one full handshake and one request.
func exchange(address string, config *tls.Config, request []byte) outcome {
	started := time.Now()
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	connection, err := tls.DialWithDialer(dialer, "tcp", address, config)
	if err != nil {
		return outcome{}
	}
	defer connection.Close()
	_ = connection.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := connection.Write(request); err != nil {
		return outcome{}
	}
	response, err := http.ReadResponse(bufio.NewReader(connection), nil)
	if err != nil {
		return outcome{}
	}
	_, err = io.Copy(io.Discard, response.Body)
	response.Body.Close()
	if err != nil {
		return outcome{}
	}
	return outcome{latency: time.Since(started), status: response.StatusCode}
}

func main() {
	workers := flag.Int("c", 16, "concurrent connections")
	duration := flag.Duration("d", 5*time.Second, "measured time")
	warmUp := flag.Duration("w", time.Second, "warm-up before the measured time")
	bodyFile := flag.String("body", "", "request body (POST); none: GET")
	flag.Parse()
	fail := func(format string, arguments ...any) {
		fmt.Fprintf(os.Stderr, "hsload: "+format+"\n", arguments...)
		os.Exit(2)
	}
	if flag.NArg() != 1 || *workers < 1 || *duration <= 0 || *duration > 10*time.Minute {
		fail("usage: hsload [-c N] [-d DURATION up to 10m] [-w DURATION] [-body FILE] https://127.0.0.1:PORT/PATH")
	}
	target, err := url.Parse(flag.Arg(0))
	if err != nil || target.Scheme != "https" {
		fail("%q is not an https URL", flag.Arg(0))
	}
	if ip := net.ParseIP(target.Hostname()); ip == nil || !ip.IsLoopback() {
		fail("%q is not a loopback address; hsload loads loopback only", target.Hostname())
	}
	method, body := "GET", []byte(nil)
	if *bodyFile != "" {
		if body, err = os.ReadFile(*bodyFile); err != nil {
			fail("%v", err)
		}
		method = "POST"
	}
	var request bytes.Buffer
	fmt.Fprintf(&request, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		method, target.RequestURI(), target.Host, len(body))
	request.Write(body)
	config := &tls.Config{
		InsecureSkipVerify: true,
		NextProtos:         []string{"http/1.1"},
		ServerName:         "localhost",
		ClientSessionCache: nil, // every connection a full handshake
	}

	measureFrom := time.Now().Add(*warmUp)
	stopAt := measureFrom.Add(*duration)
	var lock sync.Mutex
	var measured []outcome
	var group sync.WaitGroup
	for range *workers {
		group.Add(1)
		go func() {
			defer group.Done()
			var mine []outcome
			for time.Now().Before(stopAt) {
				result := exchange(target.Host, config, request.Bytes())
				if time.Now().After(measureFrom) {
					mine = append(mine, result)
				}
			}
			lock.Lock()
			measured = append(measured, mine...)
			lock.Unlock()
		}()
	}
	group.Wait()

	var ok, non2xx, errors int
	var latencies []time.Duration
	var total time.Duration
	for _, result := range measured {
		switch {
		case result.status == 0:
			errors++
			continue
		case result.status >= 200 && result.status < 300:
			ok++
		default:
			non2xx++
		}
		latencies = append(latencies, result.latency)
		total += result.latency
	}
	slices.Sort(latencies)
	milliseconds := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	percentile := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return milliseconds(latencies[min(len(latencies)-1, int(float64(len(latencies))*p))])
	}
	mean, maximum := 0.0, 0.0
	if len(latencies) > 0 {
		mean = milliseconds(total) / float64(len(latencies))
		maximum = milliseconds(latencies[len(latencies)-1])
	}
	fmt.Printf("requests=%d ok=%d non2xx=%d errors=%d rps=%.1f mean_ms=%.3f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		len(measured), ok, non2xx, errors, float64(len(measured))/duration.Seconds(), mean, percentile(0.5), percentile(0.99), maximum)
}
