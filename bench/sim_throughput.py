#!/usr/bin/env python3
"""Requests per second the simulator serves, for list pages and instance views, on a 5,000-VM fleet.

The simulator runs in its own process (`vmctl sim serve`); clients are keep-alive HTTPS connections
in threads of this process. On a 2-core machine client and server share the cores, so the numbers
are a floor for the server. Usage: python bench/sim_throughput.py [--vms 5000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
from _simproc import SimProcess, big_fleet  # noqa: E402


def run_load(sim: SimProcess, token: str, paths: list[str], seconds: float, workers: int) -> tuple[int, float, int]:
    host = urlsplit(sim.url)
    done = [0] * workers
    nbytes = [0] * workers
    stop = time.monotonic() + seconds
    errors = [0]

    def worker(i: int) -> None:
        conn = http.client.HTTPSConnection(host.hostname, host.port, context=sim.ssl)
        rnd = random.Random(i)
        while time.monotonic() < stop:
            conn.request("GET", rnd.choice(paths), headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                errors[0] += 1
            done[i] += 1
            nbytes[i] += len(body)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    if errors[0]:
        raise RuntimeError(f"{errors[0]} requests failed")
    return sum(done), elapsed, sum(nbytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vms", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--page-size", type=int, default=200)
    args = ap.parse_args()
    fleet = big_fleet(args.vms, page_size=args.page_size, throttling=False)  # the server's own rate
    sub = fleet["subscriptions"][0]["id"]
    print(f"machine: {os.cpu_count()} cores; fleet: {args.vms} VMs; page size {args.page_size}; "
          f"{args.seconds:g} s per measurement")
    with SimProcess(fleet) as sim:
        token = sim.token()
        base = f"/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines?api-version=2026-04-01&statusOnly=true"
        pages = [base] + [f"{base}&$skiptoken=o{o}" for o in range(args.page_size, args.vms, args.page_size)]
        views = []
        for g, rg in enumerate(fleet["subscriptions"][0]["resource_groups"]):
            n = rg["vms"][0]["count"]
            views += [f"/subscriptions/{sub}/resourceGroups/{rg['name']}/providers/Microsoft.Compute/virtualMachines/"
                      f"vm-{g:03d}-{i:04d}/instanceView?api-version=2026-04-01" for i in range(1, n + 1)]
        print(f"{'request':<28}{'workers':>8}{'req/s':>10}{'VMs/s':>10}{'MB/s':>8}")
        results = {}
        for label, paths, per in (("list page (statusOnly)", pages, args.page_size), ("instance view", views, 1)):
            for workers in (1, 4):
                n, el, nb = run_load(sim, token, paths, args.seconds, workers)
                results[(label, workers)] = n / el
                print(f"{label:<28}{workers:>8}{n / el:>10.0f}{n * per / el:>10.0f}{nb / el / 1e6:>8.1f}")
        full = len(pages)
        print(f"a full {args.vms:,}-VM inventory is {full} page requests: "
              f"~{full / results[('list page (statusOnly)', 1)]:.2f} s of server time at 1 worker")
        print(f"ratio instance-view req/s to list-page req/s (4 workers): "
              f"{results[('instance view', 4)] / results[('list page (statusOnly)', 4)]:.1f}x")


if __name__ == "__main__":
    main()
