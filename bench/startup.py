#!/usr/bin/env python3
"""Start-up cost: `vmctl X --help` for every command, beside `python -c pass` and the matching real
`az vm ... --help` (azure-cli from `make bench-az`), measured side by side in one run, interleaved
(one run of each command per round, so machine load hits all alike), each after one untimed run
(vmctl's bytecode cached as an installed package's is: `vmctl_env`). Median [min-max] of `--runs`.

Targets, per command: <= 4x `python -c pass` (the floor: an interpreter that imports nothing) and
<= 0.3x its az counterpart. Usage: python bench/startup.py [--runs 11] [--baseline REF]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _simproc import AzCli, Baseline, spread, vmctl_env  # noqa: E402

# vmctl command -> the az command an operator would otherwise run
COMMANDS: list[tuple[list[str], list[str] | None]] = [
    ([], ["vm"]),
    (["list"], ["vm", "list"]),
    (["show"], ["vm", "show"]),
    (["stop"], ["vm", "stop"]),
    (["deallocate"], ["vm", "deallocate"]),
    (["start"], ["vm", "start"]),
    (["restart"], ["vm", "restart"]),
    (["maintenance", "status"], ["vm", "get-instance-view"]),
    (["maintenance", "start"], ["vm", "perform-maintenance"]),
    (["evidence"], ["monitor", "activity-log", "list"]),
    (["resume"], ["vm", "start"]),
    (["report"], ["monitor", "activity-log", "list"]),
    (["sim", "serve"], None),  # no az counterpart: compared with python only
]


def once(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    # cwd outside the checkout: `python -m` puts the cwd first on sys.path, before a baseline's PYTHONPATH
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env,
                   cwd=tempfile.gettempdir())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--baseline", default=None, help="also run this git ref of vmctl, side by side")
    args = ap.parse_args()
    base = [sys.executable, "-m", "vmctl"]
    az = AzCli.find()
    baseline = Baseline(args.baseline) if args.baseline else None
    az_env = {**os.environ, "AZURE_CORE_COLLECT_TELEMETRY": "false", "AZURE_CORE_NO_COLOR": "true"}
    rows: list[tuple[str, list[str], dict[str, str] | None]] = [("python -c pass", [sys.executable, "-c", "pass"], None)]
    for sub, az_sub in COMMANDS:
        rows.append((" ".join(["vmctl", *sub, "--help"]), base + sub + ["--help"], vmctl_env()))
        if baseline is not None:
            rows.append((" ".join([f"vmctl@{baseline.ref}", *sub, "--help"]), base + sub + ["--help"],
                         vmctl_env(baseline.env())))
        az_label = " ".join(["az", *(az_sub or []), "--help"])
        if az and az_sub and all(label != az_label for label, _, _ in rows):
            rows.append((az_label, [az, *az_sub, "--help"], az_env))
    for _, cmd, env in rows:
        once(cmd, env)  # untimed: az builds its command index on the first call, vmctl caches its bytecode
    times: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    try:
        for _ in range(args.runs):
            for label, cmd, env in rows:
                times[label].append(once(cmd, env))
    finally:
        if baseline is not None:
            baseline.close()
    py = statistics.median(times["python -c pass"])
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.runs} interleaved runs each; "
          f"median [min-max] in ms")
    print(f"{'command':<44}{'ms':>28}{'x python':>10}{'x az':>8}")
    worst_py = worst_az = 0.0
    for label, cmd, _ in rows:
        t = statistics.median(times[label])
        ms = spread([x * 1000 for x in times[label]]).replace(" (n=", " n=").rstrip(")")
        ratio_az = ""
        az_sub = dict((tuple(a), b) for a, b in COMMANDS).get(tuple(label.split()[1:-1]))
        if label.startswith("vmctl ") and az and az_sub:
            az_label = " ".join(["az", *az_sub, "--help"])
            r = t / statistics.median(times[az_label])
            worst_az = max(worst_az, r)
            ratio_az = f"{r:.2f}"
        if label.startswith("vmctl "):
            worst_py = max(worst_py, t / py)
        print(f"{label:<44}{ms:>28}{t / py:>10.2f}{ratio_az:>8}")
    print(f"this tree, worst command: {worst_py:.2f}x python (target <= 4)"
          + (f", {worst_az:.2f}x az (target <= 0.3)" if az else "; az not found (`make bench-az`)"))


if __name__ == "__main__":
    main()
