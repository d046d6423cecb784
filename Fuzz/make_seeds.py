#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into Fuzz/corpus/TARGET/ from the recorded
API server wire (Tests/Fixtures/apiserver-1.28), the benchmark payloads (bench/payloads), the examples
and hand-written cases. Run from the repository root; it overwrites only files it names.
Certificates are made with openssl at run time; no private key is written (scripts/fuzz adds
freshly generated keys to its working corpus instead)."""
import base64
import glob
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "apiserver-1.28")
CORPUS = os.path.join(ROOT, "Fuzz", "corpus")


def write(target, name, data):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def read(path):
    with open(path, "rb") as f:
        return f.read()


def chunked(body, size=1000):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def split_http(data):
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


reviews = {os.path.basename(p): read(p) for p in
           glob.glob(os.path.join(FIXTURES, "admissionreview-*.json")) + glob.glob(os.path.join(ROOT, "examples", "*.json"))
           + glob.glob(os.path.join(ROOT, "bench", "payloads", "*.json"))}

# HTTP/1.1 requests: the first byte picks how the stream is cut (0: whole).
requests = {}
for name, body in sorted(reviews.items()):
    base = name.rsplit(".", 1)[0]
    requests[base + "-length"] = (b"POST /validate?timeout=10s HTTP/1.1\r\nHost: certgate.certgate.svc:443\r\n"
                                  b"Content-Type: application/json\r\nAccept: application/json, */*\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
    requests[base + "-chunked"] = (b"POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                                   b"Content-Type: application/json\r\n\r\n" + chunked(body, 700))
requests["pipelined-health"] = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz?verbose HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
requests["expect-continue"] = b"POST /validate HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}"
requests["chunk-extension-trailer"] = b"POST /validate HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n"
requests["chunk-size-overflow"] = b"POST /validate HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\n...\r\n"
requests["http10-absolute-target"] = b"GET http://a/healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
requests["bare-lf"] = b"GET /healthz HTTP/1.1\nHost: a\n\n"
for name, data in requests.items():
    write("http1-request", name, b"\x00" + data)
    write("http1-request", name + "-cut", b"\x2a" + data)
    write("http1-connection", name, data)

# HTTP/1.1 responses as the API server sends them (curl removed the chunked framing of
# non-watch answers; it is put back here), and the watch streams as recorded.
for path in sorted(glob.glob(os.path.join(FIXTURES, "*.http"))):
    name = os.path.basename(path)[:-5]
    data = read(path)
    if not data.startswith(b"HTTP/1.1"):
        continue
    head, body = split_http(data)
    if b"transfer-encoding: chunked" in head.lower():
        wire = head + b"\r\n\r\n" + chunked(body)
    else:
        wire = data
    write("http1-response", name, b"\x00" + wire)
    # The body alone for the decoders: 0 PkiList, 1 metadata-only list, 2 SecretList, 3 Status, 4 Lease.
    if b"\"kind\":\"Status\"" in body:
        selector = 3
    elif b"PartialObjectMetadataList" in body:
        selector = 1
    elif b"SecretList" in body or b"\"kind\":\"Secret\"" in body:
        selector = 2
    elif b"\"kind\":\"Lease\"" in body:
        selector = 4
    else:
        selector = 0
    if body.strip().startswith(b"{"):
        write("kube-wire", name, bytes([selector]) + body)
for path in sorted(glob.glob(os.path.join(FIXTURES, "*.raw"))):
    name = os.path.basename(path)[:-4]
    write("http1-response", name, b"\x07" + read(path))
write("kube-wire", "watch-pkis-jsonl", b"\x05" + read(os.path.join(FIXTURES, "watch-pkis.jsonl")))
write("kube-wire", "watch-pkis-jsonl-cut", b"\x0b" + read(os.path.join(FIXTURES, "watch-pkis.jsonl")))

# HTTP/2 after the preface: frames as curl and the API server would send them, framed and
# HPACK-encoded by the raw test client's own helpers.
sys.path.insert(0, os.path.join(ROOT, "Tests", "Clients"))
from rawclient import frame, hpack_literal as literal  # noqa: E402


def request_block(method, path, length=None):
    block = (literal(b":method", method) + literal(b":scheme", b"https") + literal(b":path", path)
             + literal(b":authority", b"localhost"))
    if length is not None:
        block += literal(b"content-type", b"application/json") + literal(b"content-length", str(length).encode())
    return block


settings = frame(4, 0, 0, struct.pack(">HI", 3, 100) + struct.pack(">HI", 4, 65535))
settings_ack = frame(4, 1, 0)
for name in ["admissionreview-app1.json", "allow.json", "deny.json", "admissionreview-update.json"]:
    body = reviews[name]
    data = (settings + settings_ack + frame(1, 4, 1, request_block(b"POST", b"/validate?timeout=10s", len(body)))
            + frame(0, 1, 1, body))
    write("http2-connection", name.rsplit(".", 1)[0], data)
write("http2-connection", "health-two-streams",
      settings + frame(1, 5, 1, request_block(b"GET", b"/healthz")) + frame(1, 5, 3, request_block(b"GET", b"/readyz?verbose")))
write("http2-connection", "continuation",
      settings + frame(1, 0, 1, request_block(b"GET", b"/healthz")[:20]) + frame(9, 4, 1, request_block(b"GET", b"/healthz")[20:]))
write("http2-connection", "reset-ping-window-goaway",
      settings + frame(1, 4, 1, request_block(b"POST", b"/validate", 10)) + frame(3, 0, 1, struct.pack(">I", 8))
      + frame(6, 0, 0, b"12345678") + frame(8, 0, 0, struct.pack(">I", 1000)) + frame(7, 0, 0, struct.pack(">II", 1, 0)))

# JSON documents and AdmissionReviews.
for name, body in reviews.items():
    base = name.rsplit(".", 1)[0]
    write("json", base, body)
    write("admission", base, body)
for path in sorted(glob.glob(os.path.join(FIXTURES, "requests", "*.body"))):
    write("json", "request-" + os.path.basename(path)[:-5], read(path))
write("json", "escapes-numbers", r'{"a":"\u00e9\ud83d\ude00\n\t\"\\\/","n":[0,-1,1.5e300,9223372036854775807,-9223372036854775808,1e-400],"t":true,"f":false,"z":null}')

# Policies.
write("policy", "examples-policy", read(os.path.join(ROOT, "examples", "policy.yaml")))
write("policy", "everything", """serviceNames: [shared]
namespaces:
  app1: [app1, app2]
  "*": [x]
dnsSuffixes: [.svc, .svc.cluster.local]
ipRanges: [10.0.0.0/8, fd00::/8]
duration: {minimum: 1h, maximum: 8760h, default: 2160h}
keyAlgorithms: [ECDSA, RSA, Ed25519]
minimumRSASize: 2048
issuers:
  default: {secret: kube-system/certgate-ca}
defaultIssuer: default
base: &base [a, b]
""")

# Kubeconfig, with a freshly made CA certificate (no key is written).
with tempfile.TemporaryDirectory() as scratch:
    key, cert = os.path.join(scratch, "ca.key"), os.path.join(scratch, "ca.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-subj", "/CN=fuzz-seed-ca", "-days", "3650"],
                   check=True, capture_output=True)
    leaf_key, leaf_csr, leaf = (os.path.join(scratch, n) for n in ("leaf.key", "leaf.csr", "leaf.crt"))
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", leaf_key, "-out", leaf_csr,
                    "-subj", "/CN=app1.app1.svc"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", leaf_csr, "-CA", cert, "-CAkey", key, "-CAcreateserial",
                    "-out", leaf, "-days", "90"], check=True, capture_output=True, cwd=scratch)
    ca_pem, leaf_pem = read(cert), read(leaf)
write("pem", "ca-certificate", ca_pem)
write("pem", "chain", leaf_pem + ca_pem)
write("pem", "truncated", ca_pem[:len(ca_pem) // 2])
write("pem", "wrong-label", ca_pem.replace(b"CERTIFICATE", b"PRIVATE KEY"))
ca_data = base64.b64encode(ca_pem).decode()
write("kubeconfig", "token", f"""apiVersion: v1
kind: Config
current-context: admin@kind
clusters:
- name: kind
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: {ca_data}
contexts:
- name: admin@kind
  context: {{cluster: kind, user: admin, namespace: default}}
users:
- name: admin
  user:
    token: e2e-token
""")
write("kubeconfig", "ipv6-insecure-file-token", """apiVersion: v1
kind: Config
current-context: c
clusters:
- {name: k, cluster: {server: "https://[::1]:6443", insecure-skip-tls-verify: true}}
contexts:
- {name: c, context: {cluster: k, user: u}}
users:
- {name: u, user: {tokenFile: token, client-certificate: client.crt, client-key: client.key}}
""")
