"""Draws the bar chart of one run of benchmarks/run.py (needs matplotlib: the `bench` extra).

    python chart.py benchmarks/out/results-full-....json benchmarks/results-full.png

Left: median requests per second per throughput scenario, one bar per server. Right, when
the run has them: requests per second against keep-alive connections (the scaling runs), and
2xx answers per second against connections past --limit-concurrency (the overload runs).
Invalid cells are left out, never drawn as zero.
"""
from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

THROUGHPUT = ["A", "B", "C", "D", "E", "F", "G"]
SCALING = [("S1", 1), ("S64", 64), ("S512", 512), ("S2000", 2000)]
OVERLOAD = [("O10", 10), ("O20", 20), ("O40", 40), ("O100", 100)]


def main(json_path: str, png_path: str) -> int:
    with open(json_path) as f:
        results = json.load(f)
    rates = {}
    for record in results["records"]:
        # Requests per second only: W's messages per second are in the tables, not here.
        if record.get("valid") and record.get("rps") and (
                record["scenario"] in THROUGHPUT or record["scenario"] in dict(SCALING)
                or record["scenario"] in dict(OVERLOAD)):
            rates[(record["scenario"], record["server"])] = record["rps"]
    servers = [name for name in results["servers"]
               if any(server == name for _, server in rates)]
    scenarios = [key for key in THROUGHPUT if any(key == s for s, _ in rates)]
    scaling = [(key, n) for key, n in SCALING if any(key == s for s, _ in rates)]
    overload = [(key, n) for key, n in OVERLOAD if any(key == s for s, _ in rates)]
    if not servers:
        print("nothing valid to draw")
        return 0

    palette = plt.get_cmap("tab20").colors      # 11 servers: the default cycle has 10
    colors = {server: palette[i % len(palette)] for i, server in enumerate(servers)}
    columns = 1 + bool(scaling) + bool(overload)
    figure, axes = plt.subplots(1, columns, figsize=(7 * columns + 3, 5.5), squeeze=False)
    bars = axes[0][0]
    width = 0.8 / len(servers)
    for i, server in enumerate(servers):
        positions = [j + i * width for j, key in enumerate(scenarios)]
        heights = [rates.get((key, server), 0) / 1000 for key in scenarios]
        bars.bar(positions, heights, width, label=server, color=colors[server],
                 hatch="//" if server.startswith("selectserver") else None)
    bars.set_xticks([j + 0.4 - width / 2 for j in range(len(scenarios))])
    bars.set_xticklabels(scenarios)
    bars.set_ylabel("thousand requests per second (median)")
    bars.set_title("%s run, %s" % (results["mode"], results["started"][:10]))
    bars.legend(fontsize="small")
    bars.grid(axis="y", alpha=0.3)

    if scaling:
        lines = axes[0][1]
        for server in servers:
            points = [(n, rates[(key, server)] / 1000) for key, n in scaling
                      if (key, server) in rates]
            if points:
                lines.plot([n for n, _ in points], [r for _, r in points], marker="o",
                           label=server, color=colors[server],
                           linestyle="-" if server.startswith("selectserver") else "--")
        lines.set_xscale("log")
        lines.set_xticks([n for _, n in scaling])
        lines.set_xticklabels([str(n) for _, n in scaling])
        lines.set_xlabel("keep-alive connections")
        lines.set_ylabel("thousand requests per second")
        lines.set_title("hello, as connections grow")
        lines.grid(alpha=0.3)

    if overload:
        goodput = axes[0][columns - 1]
        for server in servers:
            points = [(n, rates[(key, server)]) for key, n in overload if (key, server) in rates]
            if points:
                goodput.plot([n for n, _ in points], [r for _, r in points], marker="o",
                             label=server, color=colors[server])
        goodput.set_xscale("log")
        goodput.set_xticks([n for _, n in overload])
        goodput.set_xticklabels([str(n) for _, n in overload])
        goodput.set_ylim(bottom=0)
        goodput.set_xlabel("wrk connections, --limit-concurrency 10")
        goodput.set_ylabel("2xx answers per second (requests wait 10 ms)")
        goodput.set_title("overload: goodput holds")
        goodput.legend(fontsize="small")
        goodput.grid(alpha=0.3)

    figure.text(0.01, 0.01, "one worker pinned to one CPU, wrk on the other; "
                "absolute numbers vary by 30% between runs: compare within a run",
                fontsize="small")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(png_path, dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
