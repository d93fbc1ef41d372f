#!/usr/bin/env python3
"""Bulk power operations with vmctl's DEFAULT settings, against the rate-limit bound and real `az`.

Every fleet is shaped like a real subscription: the targets are a fraction of its VMs, the
simulator's own defaults hold (VM list pages of 200, Azure-shaped throttling, Activity Log delay
with jitter, operation durations with +-25 % jitter, no Retry-After on operations). vmctl runs as
a fresh process with no tuning flag: only what a run needs (`--yes`, `--max-targets N`, the
selection, `-o json`, `--journal`). Each measurement is repeated (`--runs`) and printed as
median [min-max].

A) platform: deallocate the N VMs tagged bench=target (1,000 in 4 resource groups) inside a
   10,000-VM subscription, at `--time-scale` (default 4). The lower bound is the earliest time the
   last operation can end when every POST is sent the moment the buckets allow it:

       bound = max over b in {ARM writes, Compute DeleteVM} of max(0, N - capacity_b) / (rate_b * scale)
               + LRO / scale

   It is compared with the operations phase of the journal (first request to last outcome);
   start-up, inventory, verify and the Activity Log wait (which is bounded by the log's own
   lag, 180-300 s / scale) are printed beside it. Targets: efficiency bound / phase >= 0.85,
   0 VMs failed by throttling, a handful of 429s at most.
B) versus az: deallocate 50 and 200 VMs (1 s operations, time scale 1) inside a 1,000-VM
   subscription, the same `--ids` given to `vmctl deallocate` and to real `az vm deallocate --ids`
   (azure-cli from `make bench-az`, `.bench/azcli`), side by side on the same simulator (reset
   between runs). vmctl gets `--no-evidence-wait`, the one non-default flag: az collects no
   Activity Log evidence, and waiting for the log measures the log's lag, not the client.
   Target: az / vmctl >= 5.

`--baseline REF` also runs another commit of vmctl (a `git worktree` of REF) in the same run.

Usage: python bench/bulk.py [--runs 3] [--time-scale 4] [--baseline REF] [--skip-a] [--skip-b]
       [--b-sizes 50,200] [--az-runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _simproc import AzCli, Baseline, SimProcess, big_fleet, median, spread, target_ids  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vmctl.simulator.fleet import DEFAULT_LRO_SECONDS  # noqa: E402
from vmctl.simulator.throttle import ARM_DEFAULTS, COMPUTE_DEFAULTS  # noqa: E402

LRO = DEFAULT_LRO_SECONDS["deallocate"]   # the simulator's default (recorded on Azure)


def lower_bound(n: int, lro: float, scale: float) -> tuple[float, dict[str, float]]:
    writes = ARM_DEFAULTS["writes"]
    delete_sub, _ = COMPUTE_DEFAULTS["DeleteVM"]
    last_post = {
        "ARM writes": max(0.0, n - writes.capacity) / (writes.per_second * scale),
        "DeleteVM": max(0.0, n - delete_sub.capacity) / (delete_sub.per_second * scale),
    }
    return max(last_post.values()) + lro / scale, last_post


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def journal_phases(path: Path) -> dict[str, float]:
    """Seconds from the journal's first line to the first request, last request, last outcome, end."""
    first = first_req = last_req = last_out = end = None
    for line in path.read_text().splitlines():
        r = json.loads(line)
        t = _ts(r["ts"])
        first = t if first is None else first
        if r["type"] == "request":
            first_req = t if first_req is None else first_req
            last_req = t
        elif r["type"] == "outcome":
            last_out = t
        elif r["type"] == "end":
            end = t
    assert first is not None and first_req is not None and last_out is not None
    return {"first request": first_req - first, "last request": (last_req or first_req) - first,
            "ops phase": last_out - first_req, "after ops": (end or last_out) - last_out}


def run_vmctl(sim: SimProcess, args: list[str], workdir: Path, label: str,
              env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    journal = workdir / f"{label}-{time.monotonic_ns()}.jsonl"
    # --engine arm: this bench measures the ARM engine (bench/batch_deallocate.py compares it with the
    # batch one); a baseline checkout (env_extra) may predate the flag and has only the ARM engine
    engine = [] if env_extra else ["--engine", "arm"]
    cmd = [sys.executable, "-m", "vmctl", "deallocate", *engine, "--yes", "-o", "json", "--journal", str(journal), *args]
    # its own state directory (locks, journals): never the operator's, never another bench run's
    env = {**os.environ, **sim.env, **(env_extra or {}), "XDG_STATE_HOME": str(workdir / "state")}
    env.pop("VMCTL_CONFIG", None)
    sim.reset_stats()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"vmctl exited {proc.returncode} without a JSON report:\n{proc.stderr[-3000:]}") from None
    if "data" not in doc:
        raise SystemExit(f"vmctl exited {proc.returncode}: {json.dumps(doc)[:2000]}\n{proc.stderr[-2000:]}")
    vms = doc["data"]["vms"]
    outcomes: dict[str, int] = {}
    for v in vms:
        outcomes[v["outcome"]] = outcomes.get(v["outcome"], 0) + 1
    failed = [v for v in vms if v["outcome"] != "succeeded"]
    throttled_failed = [v for v in failed if any(w in (v["reason"] or "").lower()
                                                 for w in ("throttl", "429", "toomanyrequests"))]
    return {"wall": wall, "cpu": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
            "exit": proc.returncode, "outcomes": outcomes, "failed": failed,
            "throttled_failed": len(throttled_failed), "stats": sim.stats(), "phases": journal_phases(journal)}


def _requests(st: dict[str, Any]) -> str:
    ops = st["by_operation"]
    return ", ".join(f"{k} {v}" for k, v in sorted(ops.items()) if k != "identity.token")


def part_a(args: argparse.Namespace, workdir: Path, baseline: Baseline | None) -> None:
    n, scale, total = args.vms, args.time_scale, args.total
    per_group = 500
    groups = 4
    fleet = big_fleet(total, per_group=per_group, targets={g: n // groups for g in range(groups)})
    bound, last_post = lower_bound(n, LRO, scale)
    writes, delete_sub = ARM_DEFAULTS["writes"], COMPUTE_DEFAULTS["DeleteVM"][0]
    print(f"\nA) deallocate {n} VMs (tag bench=target, {groups} groups) in a {total}-VM subscription, default flags, "
          f"LRO {LRO:g} s +-25 %, time scale {scale:g}, {args.runs} runs")
    print(f"   bound = max(max(0, N - {writes.capacity:g}) / ({writes.per_second:g}/s * scale) [ARM writes], "
          f"max(0, N - {delete_sub.capacity:g}) / ({delete_sub.per_second * 60:g}/min * scale) [DeleteVM]) + LRO / scale")
    print(f"         = max({last_post['ARM writes']:.2f}, {last_post['DeleteVM']:.2f}) + {LRO / scale:.2f} = {bound:.2f} s"
          "   (mean LRO: with +-25 % jitter the last operation to end usually runs longer)")
    variants: list[tuple[str, dict[str, str] | None, int]] = [("vmctl (this tree)", None, args.runs)]
    if baseline is not None and args.baseline_runs > 0:
        variants.insert(0, (f"vmctl {baseline.ref} (baseline)", baseline.env({}), args.baseline_runs))
    with SimProcess(fleet, time_scale=scale) as sim:
        for label, env_extra, runs in variants:
            results = []
            for _ in range(runs):
                sim.control("POST", "/_sim/reset")
                results.append(run_vmctl(sim, ["--tag", "bench=target", "--max-targets", str(n)], workdir, "a",
                                         env_extra))
            phase = [r["phases"]["ops phase"] for r in results]
            print(f"   {label}")
            print(f"      operations phase (first request -> last outcome)  {spread(phase)} s")
            print(f"      efficiency bound / phase                          {bound / median(phase):.3f}   (target >= 0.85)")
            print(f"      whole run wall                                    {spread([r['wall'] for r in results])} s")
            print(f"      before the first request                          {spread([r['phases']['first request'] for r in results])} s")
            print(f"      after the last outcome (verify, evidence)         {spread([r['phases']['after ops'] for r in results])} s")
            print(f"      client CPU                                        {spread([r['cpu'] for r in results])} s")
            print(f"      429s from the simulator                           {spread([float(r['stats']['throttled']) for r in results])}"
                  f"   {results[-1]['stats']['throttled_by_bucket'] or ''}")
            print(f"      VMs failed by throttling                          {max(r['throttled_failed'] for r in results)}   (target 0)")
            print(f"      outcomes {results[-1]['outcomes']}, exit {results[-1]['exit']}")
            print(f"      requests (last run): {_requests(results[-1]['stats'])}")
            for v in results[-1]["failed"][:3]:
                print(f"      not succeeded: {v['resourceGroup']}/{v['name']} {v['outcome']}: {v['reason']}")


def run_az(az: AzCli, ids: list[str]) -> float:
    t0 = time.perf_counter()
    out = az.run("vm", "deallocate", "--ids", *ids, check=False)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"az vm deallocate failed ({out.returncode}): {out.stderr[-2000:]}")
    return wall


def part_b(args: argparse.Namespace, workdir: Path, baseline: Baseline | None) -> None:
    az_path = AzCli.find()
    sizes = [int(x) for x in args.b_sizes.split(",")]
    total = args.b_total
    print(f"\nB) deallocate N VMs (1 s operations +-25 %) in a {total}-VM subscription, time scale 1; vmctl "
          f"--no-evidence-wait; {args.runs} vmctl runs, {args.az_runs} az runs")
    print("   bound = max(0, N - 200) / 10 s [ARM writes] + 1 s (LRO): 1 s for N <= 200")
    if not az_path:
        print("   real az not found: `make bench-az` installs azure-cli into .bench/azcli")
    for n in sizes:
        fleet = big_fleet(total, per_group=500, lro={"deallocate": 1},
                          targets={0: (n + 1) // 2, 1: n // 2} if n > 50 else {0: n})
        ids = target_ids(fleet)
        assert len(ids) == n
        with SimProcess(fleet, time_scale=1.0) as sim:
            variants: list[tuple[str, dict[str, str] | None]] = [("vmctl (this tree)", None)]
            if baseline is not None:
                variants.insert(0, (f"vmctl {baseline.ref} (baseline)", baseline.env({})))
            ids_file = workdir / f"ids-{n}.txt"
            ids_file.write_text("\n".join(ids) + "\n")
            walls: dict[str, list[float]] = {}
            reqs: dict[str, int] = {}
            for label, env_extra in variants:
                for _ in range(args.runs):
                    sim.control("POST", "/_sim/reset")
                    r = run_vmctl(sim, ["--ids", f"@{ids_file}", "--max-targets", str(n), "--no-evidence-wait"], workdir, "b",
                                  env_extra)
                    if r["outcomes"] != {"succeeded": n}:
                        print(f"   {label}: outcomes {r['outcomes']}")
                    walls.setdefault(label, []).append(r["wall"])
                    reqs[label] = r["stats"]["requests"]
            if az_path:
                az = AzCli(sim, az_path)
                try:
                    for _ in range(args.az_runs):
                        sim.control("POST", "/_sim/reset")
                        sim.reset_stats()
                        walls.setdefault("az vm deallocate --ids", []).append(run_az(az, ids))
                        reqs["az vm deallocate --ids"] = sim.stats()["requests"]
                finally:
                    az.close()
        print(f"   N = {n}")
        for label, w in walls.items():
            print(f"      {label:<32} {spread(w)} s   {reqs[label]} requests")
        if "az vm deallocate --ids" in walls:
            az_med = median(walls["az vm deallocate --ids"])
            for label, w in walls.items():
                if label.startswith("vmctl"):
                    print(f"      az / {label:<27} {az_med / median(w):6.1f}x   (target >= 5)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs of each vmctl measurement")
    ap.add_argument("--vms", type=int, default=1000, help="part A: VMs to deallocate")
    ap.add_argument("--total", type=int, default=10000, help="part A: VMs in the subscription")
    ap.add_argument("--time-scale", type=float, default=4.0, help="part A: simulator time scale")
    ap.add_argument("--b-sizes", default="50,200", help="part B: VMs to deallocate, comma-separated")
    ap.add_argument("--b-total", type=int, default=1000, help="part B: VMs in the subscription")
    ap.add_argument("--az-runs", type=int, default=1, help="part B: runs of az (each takes minutes: it polls every 30 s)")
    ap.add_argument("--baseline", default=None, help="also run this git ref of vmctl, side by side")
    ap.add_argument("--baseline-runs", type=int, default=1, help="part A: runs of the baseline (0: none; at the old default of 20 in flight one run takes minutes)")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; simulator in its own process")
    t0 = time.perf_counter()
    baseline = Baseline(args.baseline) if args.baseline else None
    try:
        with tempfile.TemporaryDirectory(prefix="vmctl-bulk-") as d:
            if not args.skip_b:
                part_b(args, Path(d), baseline)
            if not args.skip_a:
                part_a(args, Path(d), baseline)
    finally:
        if baseline is not None:
            baseline.close()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
