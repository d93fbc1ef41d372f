#!/usr/bin/env python3
"""Inventory across subscriptions: ARM's listings versus Azure Resource Graph, side by side in one run.

A fleet of 10,000 VMs over 20 subscriptions (500 each, groups in five regions), served by the
simulator in its own process with its defaults (VM list pages of 200, Azure-shaped ARM
throttling, Resource Graph's quota of 15 queries per 5 s and its one-minute lag). Every
measurement is a fresh `vmctl` process, the variants alternating, `--runs` times each, printed as
median [min-max]: wall time, requests (token requests left out), peak RSS and CPU of the vmctl
process, and 429s met. Each Resource Graph run starts in a fresh quota window (15 queries per 5 s).

1) `vmctl list --all-subscriptions -o json`, `--source arm` versus `--source graph`.
   Lower bounds (requests):
     arm:   1 (GET /subscriptions) + per subscription s: 1 (its name) + 2 x ceil(V_s / 200)
            (the full and the status listing, pages of 200)
     graph: 1 (GET /subscriptions) + per batch b of <= 100 subscriptions: ceil(N_b / 1000)
            (one query per page of 1,000 rows)
2) `vmctl deallocate --all-subscriptions --tag bench=target --dry-run` with the 20 targets in one
   subscription: a plan from Resource Graph is re-checked through ARM only where it acts.
     arm:   as in 1)
     graph: as in 1) + per subscription touched: 2 x ceil(V_s / 200) (the ARM re-check)

Usage: python bench/graph_inventory.py [--runs 3] [--vms 10000] [--subscriptions 20]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _simproc import SimProcess, big_fleet, median, spread  # noqa: E402

ARM_PAGE = 200     # the simulator's VM list page (Azure's is not documented)
GRAPH_PAGE = 1000  # Resource Graph's largest $top
BATCH = 100        # subscriptions per Resource Graph query (vmctl.sources.BATCH)
REGIONS = ["westeurope", "northeurope", "eastus", "westus2", "uksouth"]

# runs vmctl in this process and prints its own peak RSS (MB) and CPU (s) to stderr
CODE = ("import resource, sys, runpy; sys.argv=['vmctl', *sys.argv[1:]];\n"
        "try:\n    runpy.run_module('vmctl', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "r = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(int(r.ru_maxrss/1024), r.ru_utime + r.ru_stime, file=sys.stderr)")


def fleet(vms: int, subscriptions: int, targets: int) -> dict[str, Any]:
    f = big_fleet(vms, subscriptions=subscriptions, targets={0: targets})
    for i, sub in enumerate(f["subscriptions"]):
        for j, group in enumerate(sub["resource_groups"]):
            group["location"] = REGIONS[(i + j) % len(REGIONS)]
    return f


def arm_requests(stats: dict[str, Any]) -> int:
    return int(stats["requests"] - stats["by_operation"].get("identity.token", 0))


def run(sim: SimProcess, args: list[str]) -> tuple[float, float, int, int, int] | None:
    """(wall s, CPU s, peak RSS MB, requests, 429s) of one vmctl process; None if it failed."""
    env = {**os.environ, **sim.env}
    env.pop("VMCTL_CONFIG", None)
    sim.reset_stats()
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CODE, *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    if out.returncode:
        print(f"   (a run failed: {(out.stderr.strip().splitlines() or ['?'])[-1][:300]})")
        return None
    rss, cpu = out.stderr.strip().splitlines()[-1].split()
    stats = sim.stats()
    return wall, float(cpu), int(rss), arm_requests(stats), int(stats["by_status"].get("429", 0))


def bounds(per_sub: list[int], touched: list[int]) -> tuple[int, int, int, int]:
    n = sum(per_sub)
    arm = 1 + sum(1 + 2 * math.ceil(v / ARM_PAGE) for v in per_sub)
    batches = [per_sub[i:i + BATCH] for i in range(0, len(per_sub), BATCH)]
    graph = 1 + sum(max(1, math.ceil(sum(b) / GRAPH_PAGE)) for b in batches)
    recheck = sum(2 * math.ceil(v / ARM_PAGE) for v in touched)
    return n, arm, graph, graph + recheck


QUOTA_WINDOW = 5.0  # Resource Graph's quota window (the simulator's default, Microsoft's documented example)
_last_graph = [0.0]


def fresh_quota(args: list[str]) -> None:
    """Each Resource Graph run starts in a fresh quota window, as an operator's first inventory
    would: two runs within 5 s share 15 queries, and the second would wait for the window (vmctl's
    pacing, measured on its own by the tests, not here)."""
    if "graph" in args:
        wait = QUOTA_WINDOW + 0.5 - (time.monotonic() - _last_graph[0])
        if wait > 0:
            time.sleep(wait)


def compare(sim: SimProcess, title: str, variants: dict[str, list[str]], bound: dict[str, int], runs: int) -> dict[str, float]:
    print(f"\n{title}")
    results: dict[str, list[tuple[float, float, int, int, int]]] = {k: [] for k in variants}
    for _ in range(runs):  # alternate, so drift in the machine's load hits both alike
        for label, args in variants.items():
            fresh_quota(args)
            r = run(sim, args)
            if "graph" in args:
                _last_graph[0] = time.monotonic()
            if r is not None:
                results[label].append(r)
    medians = {}
    for label, res in results.items():
        if not res:
            print(f"   {label:<7} every run failed")
            continue
        reqs = sorted({r[3] for r in res})
        medians[label] = median([r[0] for r in res])
        print(f"   {label:<7} wall {spread([r[0] for r in res])} s   requests {'/'.join(map(str, reqs))} "
              f"(lower bound {bound[label]})   peak RSS {spread([float(r[2]) for r in res])} MB   "
              f"CPU {spread([r[1] for r in res])} s   429s {sum(r[4] for r in res)}")
    return medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--vms", type=int, default=10000)
    ap.add_argument("--subscriptions", type=int, default=20)
    ap.add_argument("--targets", type=int, default=20)
    args = ap.parse_args()
    per_sub = [args.vms // args.subscriptions] * args.subscriptions
    n, arm_bound, graph_bound, graph_plan_bound = bounds(per_sub, [per_sub[0]])
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; simulator in its own process; "
          f"{n} VMs in {args.subscriptions} subscriptions of {per_sub[0]}, five regions; {args.runs} runs each")
    print(f"bounds: arm 1 + {args.subscriptions} x (1 + 2 x ceil({per_sub[0]}/{ARM_PAGE})) = {arm_bound}; "
          f"graph 1 + ceil({n}/{GRAPH_PAGE}) = {graph_bound} (one batch of {args.subscriptions} <= {BATCH})")
    t0 = time.perf_counter()
    with SimProcess(fleet(args.vms, args.subscriptions, args.targets)) as sim:
        print(f"simulator up (fleet loaded, TLS listening) in {time.perf_counter() - t0:.2f} s")
        run(sim, ["list", "--all-subscriptions", "-o", "json"])  # warm the simulator's caches
        listed = compare(sim, "1) vmctl list --all-subscriptions -o json", {
            "arm": ["list", "--all-subscriptions", "--source", "arm", "-o", "json"],
            "graph": ["list", "--all-subscriptions", "--source", "graph", "-o", "json"],
        }, {"arm": arm_bound, "graph": graph_bound}, args.runs)
        if len(listed) == 2:
            print(f"   graph / arm wall = {listed['graph'] / listed['arm']:.2f}; requests "
                  f"{graph_bound} versus {arm_bound} at their bounds ({arm_bound / graph_bound:.1f}x fewer)")
        planned = compare(sim, f"2) vmctl deallocate --all-subscriptions --tag bench=target --dry-run "
                               f"({args.targets} targets in one subscription)", {
            "arm": ["deallocate", "--all-subscriptions", "--source", "arm", "--tag", "bench=target", "--dry-run",
                    "-o", "json"],
            "graph": ["deallocate", "--all-subscriptions", "--source", "graph", "--tag", "bench=target", "--dry-run",
                      "-o", "json"],
        }, {"arm": arm_bound, "graph": graph_plan_bound}, args.runs)
        if len(planned) == 2:
            print(f"   graph / arm wall = {planned['graph'] / planned['arm']:.2f}; graph bound = {graph_bound} + "
                  f"2 x ceil({per_sub[0]}/{ARM_PAGE}) for the one subscription re-checked = {graph_plan_bound}")


if __name__ == "__main__":
    main()
