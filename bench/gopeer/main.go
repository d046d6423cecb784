// gopeer is the benchmark's comparison server: an admission webhook on Go's net/http and
// crypto/tls, the stack controller-runtime webhooks are built on, doing the admission work
// certgate's POST /validate does on the bench payloads. It decodes the whole AdmissionReview
// with encoding/json, judges the Pki with the rules of examples/policy.yaml that the payloads
// exercise (service name per namespace with a "did you mean", DNS suffixes, duration bounds,
// key algorithm and size, usages), and answers with the request's apiVersion, kind and uid,
// a 403 status listing every violation, and warnings.
//
//	gopeer -addr 127.0.0.1:PORT -cert server.crt -key server.key
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"time"
)

// The policy of examples/policy.yaml, as far as the payloads reach it.
var (
	namesByNamespace = map[string][]string{"app1": {"app1", "app2"}}
	dnsSuffixes      = []string{".svc", ".svc.cluster.local"}
	minimumDuration  = time.Hour
	maximumDuration  = 8760 * time.Hour
	keySizes         = map[string][]int{"ECDSA": {256, 384}, "RSA": {2048, 3072, 4096}, "Ed25519": nil}
	knownUsages      = map[string]bool{"server auth": true, "client auth": true, "digital signature": true, "key encipherment": true}
)

type groupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

type privateKey struct {
	Algorithm string `json:"algorithm"`
	Size      int    `json:"size"`
}

type pkiSpec struct {
	ServiceName string      `json:"serviceName"`
	SecretName  string      `json:"secretName"`
	CommonName  string      `json:"commonName"`
	DNSNames    []string    `json:"dnsNames"`
	IPAddresses []string    `json:"ipAddresses"`
	Duration    string      `json:"duration"`
	RenewBefore string      `json:"renewBefore"`
	PrivateKey  *privateKey `json:"privateKey"`
	Usages      []string    `json:"usages"`
	Issuer      string      `json:"issuer"`
}

type pki struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   json.RawMessage `json:"metadata"`
	Spec       pkiSpec         `json:"spec"`
}

type admissionRequest struct {
	UID       string           `json:"uid"`
	Kind      groupVersionKind `json:"kind"`
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	Operation string           `json:"operation"`
	Object    *pki             `json:"object"`
	OldObject *pki             `json:"oldObject"`
	DryRun    bool             `json:"dryRun"`
}

type status struct {
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type admissionResponse struct {
	UID      string   `json:"uid"`
	Allowed  bool     `json:"allowed"`
	Status   *status  `json:"status,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

type admissionReview struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Request    *admissionRequest  `json:"request,omitempty"`
	Response   *admissionResponse `json:"response,omitempty"`
}

// editDistance is Levenshtein's, for "did you mean".
func editDistance(a, b string) int {
	previous := make([]int, len(b)+1)
	current := make([]int, len(b)+1)
	for j := range previous {
		previous[j] = j
	}
	for i := 1; i <= len(a); i++ {
		current[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			current[j] = min(previous[j]+1, current[j-1]+1, previous[j-1]+cost)
		}
		previous, current = current, previous
	}
	return previous[len(b)]
}

func judge(namespace string, spec *pkiSpec) (violations, warnings []string) {
	allowed := namesByNamespace[namespace]
	found := false
	for _, name := range allowed {
		found = found || name == spec.ServiceName
	}
	if !found {
		message := fmt.Sprintf("spec.serviceName: %q is not in the allowed names [%s] for namespace %s",
			spec.ServiceName, strings.Join(allowed, " "), namespace)
		for _, name := range allowed {
			if editDistance(name, spec.ServiceName) <= 2 {
				message += fmt.Sprintf(" (did you mean %q?)", name)
				break
			}
		}
		violations = append(violations, message)
	}
	for i, name := range spec.DNSNames {
		under := false
		for _, suffix := range dnsSuffixes {
			under = under || strings.HasSuffix(name, suffix)
		}
		if !under {
			violations = append(violations, fmt.Sprintf("spec.dnsNames[%d]: %q is not under an allowed suffix [%s]",
				i, name, strings.Join(dnsSuffixes, " ")))
		}
	}
	if spec.Duration != "" {
		if duration, err := time.ParseDuration(spec.Duration); err != nil {
			violations = append(violations, fmt.Sprintf("spec.duration: %q is not a duration", spec.Duration))
		} else if duration < minimumDuration || duration > maximumDuration {
			violations = append(violations, fmt.Sprintf("spec.duration: %s is outside [%s, %s]", spec.Duration, minimumDuration, maximumDuration))
		} else if duration >= 8760*time.Hour {
			warnings = append(warnings, fmt.Sprintf("spec.duration: %s is longer than the recommended 2160h", spec.Duration))
		}
	}
	if key := spec.PrivateKey; key != nil {
		if sizes, known := keySizes[key.Algorithm]; !known {
			violations = append(violations, fmt.Sprintf("spec.privateKey.algorithm: %q is not one of ECDSA, RSA, Ed25519", key.Algorithm))
		} else if key.Size != 0 {
			fits := false
			for _, size := range sizes {
				fits = fits || size == key.Size
			}
			if !fits {
				violations = append(violations, fmt.Sprintf("spec.privateKey.size: %d is not a size of %s %v", key.Size, key.Algorithm, sizes))
			}
		}
	}
	for i, usage := range spec.Usages {
		if !knownUsages[usage] {
			violations = append(violations, fmt.Sprintf("spec.usages[%d]: %q is not a usage certgate issues", i, usage))
		}
	}
	return violations, warnings
}

func validate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "only POST", http.StatusMethodNotAllowed)
		return
	}
	var review admissionReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 7<<20)).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "the body is not an AdmissionReview", http.StatusBadRequest)
		return
	}
	request := review.Request
	answer := &admissionResponse{UID: request.UID, Allowed: true}
	if request.Object != nil && request.Kind.Kind == "Pki" && (request.Operation == "CREATE" || request.Operation == "UPDATE") {
		violations, warnings := judge(request.Namespace, &request.Object.Spec)
		answer.Warnings = warnings
		if len(violations) > 0 {
			answer.Allowed = false
			answer.Status = &status{Code: http.StatusForbidden, Reason: "Forbidden", Message: strings.Join(violations, "\n")}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(admissionReview{APIVersion: review.APIVersion, Kind: review.Kind, Response: answer}); err != nil {
		log.Printf("writing the answer: %v", err)
	}
}

func main() {
	address := flag.String("addr", "127.0.0.1:8443", "loopback address to serve on")
	certificate := flag.String("cert", "", "PEM serving certificate")
	key := flag.String("key", "", "PEM private key")
	flag.Parse()
	host, _, err := net.SplitHostPort(*address)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Fatalf("gopeer serves loopback addresses only, not %q", *address)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/validate", validate)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	server := &http.Server{
		Addr:              *address,
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	log.Fatal(server.ListenAndServeTLS(*certificate, *key))
}
