#!/usr/bin/env python3
"""Draws the figures of one bench/run.py result as a PNG: requests a second and server CPU per
request for each scenario, one bar per server, and memory.

    bench/chart.py RESULTS.json OUT.png

Needs matplotlib (scripts/bench installs it in .venv-bench).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

PANELS = [
    ("requests a second (more is better)", ["h1_allow_rps", "h1_deny_rps", "h2_rps", "full_rps", "resumed_rps"],
     ["HTTP/1.1\nallow", "HTTP/1.1\ndeny", "HTTP/2\n4x16", "full\nhandshake", "resumed\nhandshake"]),
    ("server CPU µs a request (less is better)", ["h1_allow_cpu", "h1_deny_cpu", "h2_cpu", "full_cpu", "resumed_cpu"],
     ["HTTP/1.1\nallow", "HTTP/1.1\ndeny", "HTTP/2\n4x16", "full\nhandshake", "resumed\nhandshake"]),
    ("latency at 2,000 req/s, ms (less is better)", ["p50_ms", "p99_ms"], ["p50", "p99"]),
    ("resident memory, MiB (less is better)", ["idle_rss_mib", "peak_rss_mib"], ["idle", "peak under load"]),
]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: bench/chart.py RESULTS.json OUT.png")
    with open(sys.argv[1]) as file:
        results = json.load(file)
    servers, median = results["servers"], results["median"]
    figure, axes = plt.subplots(2, 2, figsize=(13, 8.5), gridspec_kw={"width_ratios": [5, 3]})
    width = 0.8 / len(servers)
    for axis, (title, keys, labels) in zip([axes[0][0], axes[1][0], axes[0][1], axes[1][1]], PANELS):
        for index, server in enumerate(servers):
            positions = [k + (index - (len(servers) - 1) / 2) * width for k in range(len(keys))]
            values = [median[server].get(key) or 0 for key in keys]
            bars = axis.bar(positions, values, width, label=server)
            axis.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.2g}" for v in values], fontsize=6, rotation=90, padding=2)
        axis.set_xticks(range(len(keys)), labels)
        axis.set_title(title, fontsize=10)
        axis.margins(y=0.2)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"certgate's webhook beside its peers, {results['date'][:10]}: medians of {results['rounds']} interleaved "
                    f"rounds of {results['seconds']} s on {results['machine']['cpus']} cores (load clients share them)", fontsize=10)
    figure.tight_layout()
    figure.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
