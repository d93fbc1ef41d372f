#!/usr/bin/env python3
"""Deallocate N VMs of one subscription and region: the ARM engine versus the batch engine
(ComputeSchedule), side by side in one run against one simulator (reset between runs), under
the simulator's Azure-shaped defaults: ARM writes 200 @ 10/s and reads 250 @ 25/s per
subscription, Compute DeleteVM 1,500 @ 500/min, 35 s deallocations +-25 %, ComputeSchedule
queueing 3 s before it starts a VM operation and drawing on the same DeleteVM bucket (it paces
itself rather than failing). vmctl runs as a fresh process with `--engine arm|batch --yes
--max-targets N --no-evidence-wait -o json` (the Activity Log's lag is the same for both and
measures the log, not the engine). Time runs `--time-scale` times faster (part A, default 10;
`--sweep-scale` for part B, default 20): every duration printed is simulated seconds / scale, as
measured.

A) N = 10,000 (`--vms`): wall time of the whole command and of its operations phase (the journal's
   first request or chunk -> last outcome), requests by kind, 429s, each against its lower bound:

       ARM   wall  >= max( max(0, N - 200) / (10/s * scale)       [ARM writes, one POST per VM],
                           max(0, N - 1500) / (500/min * scale) )  [Compute DeleteVM]
                      + LRO / scale
             requests >= N POSTs + ceil(N / 200) reads (one status listing to see the last ones end)
       batch wall  >= max(0, N - 1500) / (500/min * scale)         [DeleteVM: ComputeSchedule's VM operations]
                      + (3 s queue + LRO) / scale
             requests >= ceil(N / 100) Execute + ceil(N / 100) GetOperationStatus (one round after the last ends)
       429s  >= 0 for both

   (LRO is the mean 35 s; with +-25 % jitter the last of many operations runs up to 43.75 s, and the
   batch engine learns of it only at its next 15 s status round, so both sit above their bounds.)
B) the `auto` threshold: N in `--sweep` (default 10,25,50,100,200,400), both engines, the
   operations phase of each; the threshold is the smallest N from which the batch engine ends no
   later than the ARM engine at that N and at every larger N of the sweep (docs/fleet-scale.md, "Engines"; vmctl/batch.py DEFAULT_THRESHOLD).

Usage: python bench/batch_deallocate.py [--vms 10000] [--time-scale 10] [--runs 1] [--sweep 10,25,50,100,200,400]
       [--sweep-scale 20] [--sweep-runs 2] [--skip-a] [--skip-b]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _simproc import SimProcess, big_fleet, median, spread  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vmctl.simulator.fleet import DEFAULT_LRO_SECONDS, ScheduleSpec  # noqa: E402
from vmctl.simulator.throttle import ARM_DEFAULTS, COMPUTE_DEFAULTS  # noqa: E402

LRO = DEFAULT_LRO_SECONDS["deallocate"]
QUEUE = ScheduleSpec().scheduling_seconds + ScheduleSpec().queue_seconds


def bounds(n: int, scale: float) -> dict[str, dict[str, float]]:
    writes, delete = ARM_DEFAULTS["writes"], COMPUTE_DEFAULTS["DeleteVM"][0]
    delete_wait = max(0.0, n - delete.capacity) / (delete.per_second * scale)
    arm_wait = max(0.0, n - writes.capacity) / (writes.per_second * scale)
    return {
        "arm": {"wall": max(arm_wait, delete_wait) + LRO / scale, "requests": n + math.ceil(n / 200), "429": 0},
        "batch": {"wall": delete_wait + (QUEUE + LRO) / scale, "requests": 2 * math.ceil(n / 100), "429": 0},
    }


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def ops_phase(path: Path) -> float:
    """The journal's first request (ARM) or chunk (batch) -> its last outcome, in seconds."""
    first = last = None
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["type"] in ("request", "chunk") and first is None:
            first = _ts(r["ts"])
        elif r["type"] == "outcome":
            last = _ts(r["ts"])
    assert first is not None and last is not None, path
    return last - first


def run(sim: SimProcess, engine: str, n: int, workdir: Path) -> dict[str, Any]:
    journal = workdir / f"{engine}-{n}-{time.monotonic_ns()}.jsonl"
    cmd = [sys.executable, "-m", "vmctl", "deallocate", "--all", "--engine", engine, "--yes", "--max-targets", str(n),
           "--no-evidence-wait", "-o", "json", "--journal", str(journal)]
    env = {**os.environ, **sim.env, "XDG_STATE_HOME": str(workdir / "state")}
    env.pop("VMCTL_CONFIG", None)
    sim.control("POST", "/_sim/reset")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - t0
    try:
        doc = json.loads(proc.stdout)
        vms = doc["data"]["vms"]
    except (json.JSONDecodeError, KeyError):
        raise SystemExit(f"vmctl --engine {engine} exited {proc.returncode}:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}") \
            from None
    outcomes: dict[str, int] = {}
    for v in vms:
        outcomes[v["outcome"]] = outcomes.get(v["outcome"], 0) + 1
    st = sim.stats()
    ops = {k: v for k, v in st["by_operation"].items() if k != "identity.token"}
    return {"wall": wall, "phase": ops_phase(journal), "outcomes": outcomes, "exit": proc.returncode,
            "requests": sum(ops.values()), "writes": st["writes"], "reads": st["reads"], "429": st["throttled"],
            "by_operation": ops, "throttled_by_bucket": st["throttled_by_bucket"]}


def part_a(args: argparse.Namespace, workdir: Path) -> None:
    n, scale = args.vms, args.time_scale
    b = bounds(n, scale)
    print(f"\nA) deallocate {n} VMs, one subscription and region, time scale {scale:g}, {args.runs} run(s) per engine")
    print(f"   ARM   wall bound = max(max(0, N-200)/(10/s*{scale:g}), max(0, N-1500)/(500/min*{scale:g})) + {LRO:g}/{scale:g}"
          f" = {b['arm']['wall']:.2f} s; requests >= N + ceil(N/200) = {b['arm']['requests']:g}")
    print(f"   batch wall bound = max(0, N-1500)/(500/min*{scale:g}) + ({QUEUE:g}+{LRO:g})/{scale:g} = {b['batch']['wall']:.2f} s;"
          f" requests >= 2*ceil(N/100) = {b['batch']['requests']:g}")
    print("   429s bound: 0")
    fleet = big_fleet(n, per_group=500)
    results: dict[str, list[dict[str, Any]]] = {"arm": [], "batch": []}
    with SimProcess(fleet, time_scale=scale) as sim:
        for _ in range(args.runs):
            for engine in ("arm", "batch"):  # alternating: drift of the machine hits both alike
                results[engine].append(run(sim, engine, n, workdir))
    print(f"   {'':<7}{'wall (s)':>26}{'ops phase (s)':>26}{'bound / phase':>15}{'requests':>10}{'req. bound':>12}"
          f"{'429s':>7}")
    for engine, rs in results.items():
        phase = median([r["phase"] for r in rs])
        print(f"   {engine:<7}{spread([r['wall'] for r in rs]):>26}{spread([r['phase'] for r in rs]):>26}"
              f"{b[engine]['wall'] / phase:>15.3f}{int(median([r['requests'] for r in rs])):>10}"
              f"{b[engine]['requests']:>12g}{int(median([r['429'] for r in rs])):>7}")
    for engine, rs in results.items():
        last = rs[-1]
        print(f"   {engine}: outcomes {last['outcomes']}, exit {last['exit']}, writes {last['writes']}, reads {last['reads']}, "
              f"throttled {last['throttled_by_bucket'] or 'none'}")
        print(f"      requests: {', '.join(f'{k} {v}' for k, v in sorted(last['by_operation'].items()))}")
    arm, batch = (median([r["phase"] for r in results[e]]) for e in ("arm", "batch"))
    areq, breq = (median([r["requests"] for r in results[e]]) for e in ("arm", "batch"))
    print(f"   ratios (ARM / batch): ops phase {arm / batch:.2f}x, requests {areq / breq:.1f}x")


def part_b(args: argparse.Namespace, workdir: Path) -> None:
    sizes = [int(x) for x in args.sweep.split(",")]
    scale = args.sweep_scale
    print(f"\nB) the auto threshold: operations phase (s, median of {args.sweep_runs}) per engine, time scale {scale:g}")
    print(f"   {'N':>6}{'ARM':>10}{'batch':>10}{'batch/ARM':>11}{'ARM req.':>10}{'batch req.':>12}")
    rows: list[tuple[int, float, float]] = []
    for n in sizes:
        with SimProcess(big_fleet(n, per_group=500), time_scale=scale) as sim:
            rs: dict[str, list[dict[str, Any]]] = {"arm": [], "batch": []}
            for _ in range(args.sweep_runs):
                for engine in ("arm", "batch"):
                    rs[engine].append(run(sim, engine, n, workdir))
        arm, batch = (median([r["phase"] for r in rs[e]]) for e in ("arm", "batch"))
        areq, breq = (median([r["requests"] for r in rs[e]]) for e in ("arm", "batch"))
        print(f"   {n:>6}{arm:>10.2f}{batch:>10.2f}{batch / arm:>11.2f}{areq:>10g}{breq:>12g}")
        rows.append((n, arm, batch))
    # the threshold: the smallest N from which the batch engine ends no later than ARM at every
    # larger N of the sweep too (one lucky size does not make a threshold)
    threshold = next((n for i, (n, _, _) in enumerate(rows) if all(b <= a for _, a, b in rows[i:])), None)
    print(f"   threshold: from N = {threshold or 'none in the sweep'} on, the batch engine ends no later than ARM")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vms", type=int, default=10000)
    ap.add_argument("--time-scale", type=float, default=10.0,
                    help="part A's time scale (above ~10 the ARM engine's 10,000 polls outrun 2 cores: the client, not "
                         "Azure's limits, would be measured)")
    ap.add_argument("--sweep", default="10,25,50,100,200,400")
    ap.add_argument("--sweep-scale", type=float, default=20.0, help="part B's time scale")
    ap.add_argument("--runs", type=int, default=1, help="runs of each engine in part A")
    ap.add_argument("--sweep-runs", type=int, default=2, help="runs of each engine at each N in part B")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; simulator in its own process")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vmctl-batch-bench-") as d:
        if not args.skip_b:
            part_b(args, Path(d))
        if not args.skip_a:
            part_a(args, Path(d))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
