#!/usr/bin/env python3
"""Certgate beside the Go net/http peer and nginx's fixed answer, in one run, on loopback.

    bench/run.py --hsload BIN [--rounds 3] [--seconds 5] [--json FILE] NAME 'COMMAND' ...

COMMAND starts one server in the foreground; {port}, {cert}, {key} and {ca} are filled in
(a fresh ECDSA P-256 certificate for localhost and 127.0.0.1, made with openssl). The last
server is the one under test: the ratios compare it with each of the others. The table gives
the median of the rounds, which run interleaved (A B C A B C ...) so the drift of a shared
machine hits all alike; --json writes every round's figures and the medians for
bench/chart.py. The AdmissionReviews sent are bench/payloads/allow.json and deny.json.

Scenarios, each with the server's CPU per request (utime + stime of the server and its
children from /proc, over the measured window, divided by the requests answered):
  h1 allow / h1 deny   HTTP/1.1 keep-alive, 16 connections (h2load --h1)
  h2                   HTTP/2, 4 connections x 16 streams (h2load)
  full handshake       a new connection and a FULL TLS handshake per request, 16 at once
                       (bench/hsload: no session cache)
  resumed handshake    a new connection per request that resumes its TLS session (wrk with
                       Connection: close; wrk keeps the session of each connection)
  p50/p99 @2k          HTTP/1.1 at a fixed 2,000 req/s over 4 connections
and idle and peak RSS of the server. Every load loop is bounded in time.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PAYLOADS = {"allow": os.path.join(HERE, "payloads", "allow.json"), "deny": os.path.join(HERE, "payloads", "deny.json")}


def make_certs(directory):
    """A CA and a serving certificate for localhost and 127.0.0.1, both ECDSA P-256."""
    def openssl(*arguments):
        subprocess.run(["openssl", *arguments], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *p256, "-keyout", f"{directory}/ca.key", "-out", f"{directory}/ca.crt", "-days", "2",
            "-subj", "/CN=certgate bench CA")
    openssl("req", *p256, "-keyout", f"{directory}/server.key", "-out", f"{directory}/server.csr", "-subj", "/CN=localhost")
    with open(f"{directory}/server.ext", "w") as file:
        file.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{directory}/server.csr", "-CA", f"{directory}/ca.crt", "-CAkey", f"{directory}/ca.key",
            "-CAcreateserial", "-out", f"{directory}/server.crt", "-days", "2", "-extfile", f"{directory}/server.ext")
    return {"cert": f"{directory}/server.crt", "key": f"{directory}/server.key", "ca": f"{directory}/ca.crt"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_server(command, certs):
    """Starts COMMAND in a process group of its own; returns once its port accepts."""
    port = free_port()
    process = subprocess.Popen(command.format(port=port, **certs), shell=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command!r} exited with {process.returncode} before serving")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            time.sleep(0.3)
            return process, port
        except OSError:
            time.sleep(0.1)
    stop_server(process)
    raise RuntimeError(f"{command!r} did not open port {port} within 30 s")


def stop_server(process):
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(5)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def tree_memory_kib(pid, field):
    """VmRSS or VmHWM of the server and its children (a shell, nginx's workers)."""
    total = 0
    for process in tree_pids(pid):
        try:
            with open(f"/proc/{process}/status") as status:
                total += next((int(line.split()[1]) for line in status if line.startswith(field + ":")), 0)
        except OSError:
            pass
    return total


def percentiles(logfile):
    """p50 and p99 in ms of the 2xx answers in an h2load log (its third column is µs)."""
    latencies = []
    with open(logfile) as log:
        for line in log:
            columns = line.split()
            if len(columns) >= 3 and columns[1] == "200":
                latencies.append(int(columns[2]))
    if not latencies:
        return None, None
    latencies.sort()
    return latencies[len(latencies) // 2] / 1000.0, latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000.0


def tree_pids(pid):
    pids = [pid]
    try:
        for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
            pids += tree_pids(int(child))
    except OSError:
        pass
    return pids


def tree_cpu_seconds(pid):
    """utime + stime of the server and its children (nginx's workers, a wrapping shell)."""
    ticks = 0
    for p in tree_pids(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def h2load(url, payload, seconds, extra, logfile=None):
    """(requests answered 2xx, non-2xx or failed, raw output); no warm-up inside the window."""
    cmd = ["h2load", "-t", "1", "-D", str(seconds), "-d", payload, "-H", "content-type: application/json"] + extra + [url]
    if logfile:
        cmd.insert(1, f"--log-file={logfile}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    ok = int(codes.group(1)) if codes else 0
    bad = (int(done.group(3)) + int(done.group(4))) if done else 1
    if codes:
        bad += sum(int(codes.group(i)) for i in (2, 3, 4))
    return ok + bad, bad, out


def hsload(binary, url, payload, seconds):
    out = subprocess.run([binary, "-c", "16", "-d", f"{seconds}s", "-w", "0s", "-body", payload, url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    requests = re.search(r"requests=(\d+)", out)
    bad = sum(int(m) for m in re.findall(r"(?:non2xx|errors)=(\d+)", out))
    return (int(requests.group(1)) if requests else 0), bad


def wrk_resumed(url, payload, seconds):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    body = open(payload).read().replace("]]", "] ]")
    script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                 'wrk.headers["Connection"] = "close"\nwrk.body = [[' + body + ']]\n')
    script.close()
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", script.name, url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    os.unlink(script.name)
    requests = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(errors.group(i)) for i in range(1, 5)) if errors else 0)
    return (int(requests.group(1)) if requests else 0), bad


def measured(pid, seconds, run):
    """Runs `run` (which returns (requests, bad)) and returns rps, CPU µs per request, bad."""
    cpu0, t0 = tree_cpu_seconds(pid), time.monotonic()
    requests, bad = run()
    cpu1, t1 = tree_cpu_seconds(pid), time.monotonic()
    if not requests:
        return 0.0, None, bad or 1
    return requests / max(t1 - t0, seconds), (cpu1 - cpu0) * 1e6 / requests, bad


def one_round(name, cmd, certs, seconds, hsload_binary, tmp):
    proc, port = run_server(cmd, certs)
    url = f"https://127.0.0.1:{port}/validate?timeout=10s"
    allow, deny = PAYLOADS["allow"], PAYLOADS["deny"]
    r = {"idle_rss_mib": tree_memory_kib(proc.pid, "VmRSS") / 1024}
    bad = 0
    try:
        h2load(url, allow, 1, ["--h1", "-c", "16"])  # warm-up, outside every window
        for key, payload, extra in [("h1_allow", allow, ["--h1", "-c", "16"]), ("h1_deny", deny, ["--h1", "-c", "16"]),
                                    ("h2", allow, ["-c", "4", "-m", "16"])]:
            rps, cpu, failed = measured(proc.pid, seconds, lambda: h2load(url, payload, seconds, extra)[:2])
            r[key + "_rps"], r[key + "_cpu"], bad = rps, cpu, bad + failed
        rps, cpu, failed = measured(proc.pid, seconds, lambda: hsload(hsload_binary, url, allow, seconds))
        r["full_rps"], r["full_cpu"], bad = rps, cpu, bad + failed
        rps, cpu, failed = measured(proc.pid, seconds, lambda: wrk_resumed(url, allow, seconds))
        r["resumed_rps"], r["resumed_cpu"], bad = rps, cpu, bad + failed
        log = os.path.join(tmp, f"{name}.log")
        _, failed, _ = h2load(url, allow, seconds, ["--h1", "-c", "4", "--rps", "500"], logfile=log)
        r["p50_ms"], r["p99_ms"] = percentiles(log)
        r["peak_rss_mib"] = tree_memory_kib(proc.pid, "VmHWM") / 1024
        r["failed"] = bad + failed
    finally:
        stop_server(proc)
    return r


ROWS = [("h1_allow_rps", "HTTP/1.1 keep-alive allow, req/s"), ("h1_deny_rps", "HTTP/1.1 keep-alive deny, req/s"),
        ("h2_rps", "HTTP/2 4x16, req/s"), ("full_rps", "full TLS handshake per request, req/s"),
        ("resumed_rps", "resumed TLS handshake per request, req/s"),
        ("h1_allow_cpu", "server CPU µs/request, h1 allow"), ("h1_deny_cpu", "server CPU µs/request, h1 deny"),
        ("h2_cpu", "server CPU µs/request, h2"), ("full_cpu", "server CPU µs/request, full handshake"),
        ("resumed_cpu", "server CPU µs/request, resumed handshake"),
        ("p50_ms", "p50 ms at 2,000 req/s"), ("p99_ms", "p99 ms at 2,000 req/s"),
        ("idle_rss_mib", "idle RSS MiB"), ("peak_rss_mib", "peak RSS MiB"), ("failed", "failed or non-2xx answers")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hsload", required=True, help="the bench/hsload binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--json", help="write every round and the medians here, for bench/chart.py")
    ap.add_argument("servers", nargs="+", help="NAME 'COMMAND' pairs; the last is the server under test")
    a = ap.parse_args()
    if len(a.servers) % 2:
        ap.error("servers come in NAME 'COMMAND' pairs")
    servers = list(zip(a.servers[::2], a.servers[1::2]))
    for tool in ("openssl", "h2load", "wrk"):
        if not shutil.which(tool):
            ap.error(f"{tool} is not installed (scripts/bench installs it)")
    tmp = tempfile.mkdtemp(prefix="certgate-bench-")
    certs = make_certs(tmp)
    results = {n: [] for n, _ in servers}
    for round_number in range(a.rounds):
        for name, cmd in servers:
            print(f"round {round_number + 1}/{a.rounds}: {name}", file=sys.stderr, flush=True)
            results[name].append(one_round(name, cmd, certs, a.seconds, a.hsload, tmp))
    median = {n: {k: statistics.median([x[k] for x in rs if x.get(k) is not None] or [0]) for k, _ in ROWS}
              for n, rs in results.items()}
    names = [n for n, _ in servers]
    last = names[-1]
    others = [n for n in names if n != last]
    print(f"| medians of {a.rounds} rounds | " + " | ".join(names) + " | " + " | ".join(f"{last}/{n}" for n in others) + " |")
    print("|---" * (1 + len(names) + len(others)) + "|")
    for key, label in ROWS:
        values = [median[n][key] for n in names]
        ratios = [f"{median[last][key] / median[n][key]:.2f}x" if median[n][key] else "" for n in others]
        print(f"| {label} | " + " | ".join(f"{v:,.2f}" if isinstance(v, float) else str(v) for v in values)
              + " | " + " | ".join(ratios) + " |")
    if a.json:
        with open(a.json, "w") as file:
            json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
                       "rounds": a.rounds, "seconds": a.seconds, "servers": names, "under_test": last,
                       "labels": dict(ROWS), "median": median, "runs": results}, file, indent=1)
            file.write("\n")


if __name__ == "__main__":
    main()
