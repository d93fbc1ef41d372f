#!/usr/bin/env python3
"""Inventory cost: `vmctl list -o json` over 5,000 and 10,000 VMs in the simulator (its default,
Azure's sparse status listing: vmctl joins the full listing with it), side by side with the per-VM
approach `az vm list -d` takes (a list, then one instance-view GET per VM, serially: 1 + N requests
at least; az also reads each NIC, so really 1 + 2N). Client wall time, request count (from
/_sim/stats) and the client's peak memory, in one run.

Targets: 5,000 VMs in <= 2 s beyond start-up, <= 2 x pages + 1 requests per subscription,
<= 200 MB at 10,000 VMs. Usage: python bench/inventory.py [--sizes 5000,10000] [--per-vm-max 5000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _simproc import SimProcess, big_fleet  # noqa: E402

PAGE = 1000  # ARM's VM list page size is not documented; 1,000 is assumed here (fleet paging: vms)


def arm_requests(stats: dict) -> int:
    return int(stats["requests"] - stats["by_operation"].get("identity.token", 0))


def run_vmctl(sim: SimProcess, extra_env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """Wall time of `vmctl list -o json` (a fresh process), ARM requests, peak RSS (MB)."""
    env = {**os.environ, **sim.env, **(extra_env or {})}
    sim.reset_stats()
    code = ("import resource, sys, runpy; sys.argv=['vmctl','list','-o','json'];\n"
            "try:\n    runpy.run_module('vmctl', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024), file=sys.stderr)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    rss = int(out.stderr.strip().splitlines()[-1])
    return wall, arm_requests(sim.stats()), rss


def startup(sim: SimProcess) -> float:
    env = {**os.environ, **sim.env}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vmctl", "list", "--help"], env=env, capture_output=True, check=True)
    return time.perf_counter() - t0


def run_per_vm(sim: SimProcess, sub: str) -> tuple[float, int]:
    """The az-vm-list-d approach with the same SDK: list, then one GET with instanceView per VM."""
    sim.apply_env()
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient

    client = ComputeManagementClient(DefaultAzureCredential(), sub, base_url=sim.url)
    sim.reset_stats()
    t0 = time.perf_counter()
    for vm in client.virtual_machines.list_all():
        rg = vm.id.split("/")[4]
        client.virtual_machines.get(rg, vm.name, expand="instanceView")
    return time.perf_counter() - t0, arm_requests(sim.stats())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="5000,10000")
    ap.add_argument("--memory-vms", type=int, default=0, help="one more vmctl-only run at this size")
    ap.add_argument("--per-vm-max", type=int, default=5000, help="skip the per-VM approach above this size")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; simulator in its own process, throttling off, page size {PAGE}")
    print(f"{'VMs':>6} {'approach':<34}{'wall s':>8}{'requests':>10}{'peak MB':>9}")
    for n in [int(x) for x in args.sizes.split(",")]:
        fleet = big_fleet(n, page_size=PAGE)
        sub = fleet["subscriptions"][0]["id"]
        with SimProcess(fleet) as sim:
            run_vmctl(sim)  # warm the simulator's JSON cache and the OS file cache
            base = startup(sim)
            wall, reqs, rss = run_vmctl(sim)
            pages = -(-n // PAGE)
            print(f"{n:>6} {'vmctl list -o json':<34}{wall:>8.2f}{reqs:>10}{rss:>9}")
            print(f"{'':>6} {'  of which beyond start-up':<34}{wall - base:>8.2f}"
                  f"{'':>10}{'':>9}   (target <= 2 s; requests target <= 2 x {pages} pages + 1 = {2 * pages + 1})")
            if n <= args.per_vm_max:
                pw, preqs = run_per_vm(sim, sub)
                print(f"{'':>6} {'per-VM instance views (az -d style)':<34}{pw:>8.2f}{preqs:>10}")
                print(f"{'':>6} {'  ratio per-VM / vmctl':<34}{pw / wall:>8.1f}x{preqs / reqs:>9.0f}x")
    if args.memory_vms:
        with SimProcess(big_fleet(args.memory_vms, page_size=PAGE)) as sim:
            run_vmctl(sim)
            wall, reqs, rss = run_vmctl(sim)
            print(f"{args.memory_vms:>6} {'vmctl list -o json (memory)':<34}{wall:>8.2f}{reqs:>10}{rss:>9}"
                  f"   (target <= 200 MB)")


if __name__ == "__main__":
    main()
