#!/usr/bin/env python3
"""Inventory: `vmctl list -o json` beside real `az vm list`, and vmctl's CPU and memory at 50,000 VMs.

Fleets use the simulator's defaults (VM list pages of 200, Azure-shaped throttling). Every
measurement is a fresh process, repeated `--runs` times in interleaved rounds (one run of each
variant per round, so machine load hits all alike), printed as median [min-max]. Each variant has
one untimed run first; vmctl's bytecode is cached as an installed package's is (`vmctl_env`).

1) 5,000 VMs: wall of `vmctl list -o json` beside `az vm list -o json` (azure-cli from
   `make bench-az`; az reads the full listing only and has no power state) and `az vm list -d`
   when `--az-details` (1 + 2N requests: it reads each VM's instance view and NIC). Target: vmctl
   <= 0.15x `az vm list` (wall). The CPU of each process (tree) is printed too: unlike the wall,
   it hardly moves when other work shares the machine.
   Lower bound for vmctl: 2 x ceil(N / 200) pages + 1 requests (full and status listings, in two
   concurrent streams, plus the subscription's name).
2) 50,000 VMs: vmctl's CPU time (user + system) and peak RSS. Target: CPU <= 1/3 of the baseline
   (`--baseline REF`, the commit before the work, run side by side), peak RSS <= 200 MB.
   Per-page floor: every page is decoded once by the client (json.loads of its bytes). The
   simulator is reset before each run, so every run starts from full throttling buckets (500 list
   requests exceed ARM's 250 reads at once: a client that does not pace itself meets 429s).

Usage: python bench/inventory.py [--runs 3] [--baseline REF] [--small 5000] [--large 50000] [--az-details]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _simproc import AzCli, Baseline, SimProcess, big_fleet, median, spread, vmctl_env  # noqa: E402

PAGE = 200  # the simulator's default VM page size (Azure's is not documented)

# runs `vmctl list -o json` in this process and prints its own peak RSS and CPU to stderr
CODE = ("import resource, sys, runpy; sys.argv=['vmctl','list','-o','json'];\n"
        "try:\n    runpy.run_module('vmctl', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "r = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(int(r.ru_maxrss/1024), r.ru_utime + r.ru_stime, file=sys.stderr)")


def arm_requests(stats: dict) -> int:
    return int(stats["requests"] - stats["by_operation"].get("identity.token", 0))


def run_vmctl(sim: SimProcess, env_extra: dict[str, str] | None = None) -> tuple[float, float, int, int] | None:
    """(wall, cpu, peak RSS MB, ARM requests) of one `vmctl list -o json` process; None if it failed."""
    env = {**vmctl_env(), **sim.env, **(env_extra or {})}
    env.pop("VMCTL_CONFIG", None)
    sim.reset_stats()
    t0 = time.perf_counter()
    # cwd outside the checkout: `python -c` puts the cwd first on sys.path, before a baseline's PYTHONPATH
    out = subprocess.run([sys.executable, "-c", CODE], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    if out.returncode:
        last = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        print(f"   (a run failed: {(last or out.stderr.splitlines()[-1:] or ['?'])[0][:300]})")
        return None
    rss, cpu = out.stderr.strip().splitlines()[-1].split()
    return wall, float(cpu), int(rss), arm_requests(sim.stats())


def run_az(az: AzCli, sim: SimProcess, *args: str) -> tuple[float, float, int]:
    """(wall, CPU of the az process tree, ARM requests) of one `az vm list`."""
    sim.reset_stats()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    az.run("vm", "list", "-o", "json", *args)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, arm_requests(sim.stats())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small", type=int, default=5000)
    ap.add_argument("--large", type=int, default=50000)
    ap.add_argument("--baseline", default=None, help="also run this git ref of vmctl, side by side")
    ap.add_argument("--az-details", action="store_true", help="also time `az vm list -d` (1 + 2N requests, slow)")
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--skip-large", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; simulator in its own process, "
          f"page size {PAGE}, throttling on; {args.runs} runs each")
    baseline = Baseline(args.baseline) if args.baseline else None
    variants: list[tuple[str, dict[str, str] | None]] = [("vmctl list -o json", None)]
    if baseline is not None:
        variants.insert(0, (f"vmctl {baseline.ref} list -o json", baseline.env({})))
    try:
        if not args.skip_small:
            n = args.small
            pages = -(-n // PAGE)
            print(f"\n1) {n} VMs; bound: 2 x {pages} pages + 1 = {2 * pages + 1} requests")
            walls: dict[str, list[float]] = {label: [] for label, _ in variants}
            cpu: dict[str, list[float]] = {label: [] for label, _ in variants}
            reqs: dict[str, int] = {}
            with SimProcess(big_fleet(n)) as sim:
                az_path = AzCli.find()
                az = AzCli(sim, az_path) if az_path else None
                try:
                    for _, env in variants:
                        run_vmctl(sim, env)  # untimed: warms the simulator's caches and vmctl's bytecode
                    if az is not None:
                        run_az(az, sim)
                        walls["az vm list -o json"], cpu["az vm list -o json"] = [], []
                    for _ in range(args.runs):
                        for label, env in variants:
                            r = run_vmctl(sim, env)
                            if r is not None:
                                walls[label].append(r[0])
                                cpu[label].append(r[1])
                                reqs[label] = r[3]
                        if az is not None:
                            w, c, reqs["az vm list -o json"] = run_az(az, sim)
                            walls["az vm list -o json"].append(w)
                            cpu["az vm list -o json"].append(c)
                    if az is not None and args.az_details:
                        w, c, reqs["az vm list -d -o json"] = run_az(az, sim, "-d")
                        walls["az vm list -d -o json"], cpu["az vm list -d -o json"] = [w], [c]
                finally:
                    if az is not None:
                        az.close()
                if az is None:
                    print("   real az not found: `make bench-az` installs azure-cli into .bench/azcli")
            for label, ws in walls.items():
                print(f"   {label:<34} wall {spread(ws)} s   CPU {spread(cpu[label])} s   {reqs.get(label, '-')} requests")
            if walls.get("az vm list -o json"):
                az_med, az_cpu = median(walls["az vm list -o json"]), median(cpu["az vm list -o json"])
                for label, ws in walls.items():
                    if label.startswith("vmctl") and ws:
                        print(f"   {label:<34} / az vm list = {median(ws) / az_med:.3f} wall (target <= 0.15), "
                              f"{median(cpu[label]) / az_cpu:.3f} CPU")
        if not args.skip_large:
            n = args.large
            print(f"\n2) {n} VMs: CPU and peak memory of one `vmctl list -o json` process "
                  f"(simulator reset before each run)")
            results: dict[str, list[tuple[float, float, int, int]]] = {label: [] for label, _ in variants}
            failed: dict[str, int] = {label: 0 for label, _ in variants}
            with SimProcess(big_fleet(n)) as sim:
                for _, env in variants:
                    sim.control("POST", "/_sim/reset")
                    run_vmctl(sim, env)  # untimed: warms the simulator's caches and vmctl's bytecode
                for _ in range(args.runs):
                    for label, env in variants:
                        sim.control("POST", "/_sim/reset")
                        r = run_vmctl(sim, env)
                        if r is None:
                            failed[label] += 1
                        else:
                            results[label].append(r)
            cpus: dict[str, list[float]] = {}
            for label, res in results.items():
                print(f"   {label:<34} {failed[label]} of {args.runs} runs failed")
                if not res:
                    continue
                cpus[label] = [r[1] for r in res]
                print(f"   {label:<34} CPU {spread([r[1] for r in res])} s   peak RSS "
                      f"{spread([float(r[2]) for r in res])} MB (target <= 200)   wall {spread([r[0] for r in res])} s"
                      f"   {res[-1][3]} requests")
            if baseline is not None and variants[0][0] in cpus and "vmctl list -o json" in cpus:
                before = median(cpus[variants[0][0]])
                after = median(cpus["vmctl list -o json"])
                print(f"   CPU this tree / baseline = {after / before:.3f}   (target <= 0.333)")
    finally:
        if baseline is not None:
            baseline.close()


if __name__ == "__main__":
    main()
