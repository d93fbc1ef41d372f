#!/usr/bin/env python3
"""Start-up cost: median wall time of `vmctl --help` and `vmctl list --help`, beside `python -c pass`
(and `az --help` when an `az` is on PATH), measured side by side in one run.
Target: `vmctl --help` <= 0.25 s median on a 2-core machine. Usage: python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def median_time(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    vmctl = shutil.which("vmctl", path=os.path.dirname(sys.executable)) or shutil.which("vmctl")
    base = [vmctl] if vmctl else [sys.executable, "-m", "vmctl"]
    rows = [("python -c pass", [sys.executable, "-c", "pass"]),
            ("vmctl --help", base + ["--help"]),
            ("vmctl list --help", base + ["list", "--help"])]
    az = shutil.which("az")
    if az:
        rows.append(("az --help", [az, "--help"]))
    print(f"machine: {os.cpu_count()} cores; median of {args.runs} runs each")
    results = {}
    for label, cmd in rows:
        results[label] = median_time(cmd, args.runs)
    py = results["python -c pass"]
    for label, t in results.items():
        print(f"{label:<22}{t * 1000:>8.0f} ms   {t / py:>5.1f}x python")
    target = results["vmctl --help"]
    print(f"vmctl --help target <= 250 ms: {'met' if target <= 0.25 else 'MISSED'} ({target * 1000:.0f} ms)")
    if az:
        print(f"vmctl --help is {results['az --help'] / target:.1f}x faster than az --help")


if __name__ == "__main__":
    main()
