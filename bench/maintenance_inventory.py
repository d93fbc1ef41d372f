#!/usr/bin/env python3
"""`vmctl maintenance status` over 1,000 VMs that all have maintenance pending, in both simulator
modes, side by side in one run: Azure's status listing without `maintenanceRedeployStatus` (the
default: not established that Azure includes it), so vmctl reads each selected VM's instance view,
paced on Compute's LowCostGet and ARM's read budget; and a listing that carries it (0 per-VM reads).
Both must find the same pending maintenance. Requests, wall time, and the ratio.

With `--throttling` the simulator enforces ARM's read bucket (250, then 25/s), so the per-VM mode
runs at the platform's pace; without it, the client's own cost shows.
Usage: python bench/maintenance_inventory.py [--vms 1000] [--throttling]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _simproc import SimProcess, big_fleet  # noqa: E402

MAINT = {"maintenance": {"allowed": True, "self_service_window": ["-1d", "6d"], "scheduled_window": ["7d", "8d"]}}


def run(sim: SimProcess) -> tuple[float, int, int, list[str]]:
    env = {**os.environ, **sim.env}
    sim.reset_stats()
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "vmctl", "maintenance", "status", "-o", "json"], env=env,
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    stats = sim.stats()
    views = int(stats["by_operation"].get("virtualMachines.instanceView", 0))
    reqs = int(stats["requests"] - stats["by_operation"].get("identity.token", 0))
    pending = sorted(d["id"] for d in json.loads(out.stdout)["data"])
    return wall, reqs, views, pending


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--throttling", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.vms} VMs, all with maintenance pending; "
          f"throttling {'on' if args.throttling else 'off'}; real time")
    print(f"{'status listing':<44}{'wall s':>8}{'requests':>10}{'inst.views':>11}")
    results = {}
    for label, platform in (("without maintenanceRedeployStatus (default)", {}),
                            ("with maintenanceRedeployStatus", {"maintenance_in_status_list": True})):
        fleet = big_fleet(args.vms, page_size=1000, throttling=args.throttling, vm_extra=MAINT, platform=platform)
        with SimProcess(fleet) as sim:
            wall, reqs, views, pending = run(sim)
        results[label] = (wall, reqs, pending)
        print(f"{label:<44}{wall:>8.2f}{reqs:>10}{views:>11}")
    (w0, r0, p0), (w1, r1, p1) = results.values()
    assert p0 == p1 and len(p0) == args.vms, "both modes must find the same pending maintenance"
    print(f"{'ratio default / carried':<44}{w0 / w1:>7.1f}x{r0 / r1:>9.0f}x   same {len(p0)} VMs found in both modes")


if __name__ == "__main__":
    main()
