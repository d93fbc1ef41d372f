#!/usr/bin/env python3
"""Bulk power operations: vmctl's paced executor against the rate limits, measured in one run.

A) 1,000 deallocations in the simulator with Azure-shaped limits (its default throttling: ARM writes
   200 burst @ 10/s, Compute DeleteVM 1500 @ 500/min, reads 250 @ 25/s) and `--time-scale` so it
   runs in about a minute. `vmctl deallocate --yes -o json` runs as a subprocess with the
   simulator's env (VMCTL_PACE_SCALE included). Printed: wall time, the lower bound the rate limits
   and the LRO duration allow, the efficiency lower_bound / wall (target >= 0.85), VMs that failed
   from throttling (target 0) and the simulator's throttled-request count.
B) 50 deallocations with a 1 s LRO at time scale 1: vmctl (default --parallel) beside a 10-worker,
   unpaced, wait-for-each run (the concurrency `az vm deallocate --ids` uses: azure-mgmt-compute's
   begin_deallocate(...).result() in a ThreadPoolExecutor(10)). Both run as fresh processes, so both
   walls include interpreter start-up, imports and the first token. Printed: both walls and the ratio.

Usage: python bench/bulk.py [--vms 1000] [--time-scale 2] [--b-vms 50] [--skip-a] [--skip-b]
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
from _simproc import SimProcess, big_fleet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vmctl.simulator.throttle import ARM_DEFAULTS, COMPUTE_DEFAULTS  # noqa: E402

PAGE = 1000            # status-listing page size (same assumption as bench/inventory.py)
LRO_DEALLOCATE = 45.0  # the simulator's default deallocate duration (simulated seconds)
AZ_WORKERS = 10        # `az vm deallocate --ids` runs its ids on a 10-thread pool and waits for each


def lower_bound(n: int, lro: float, scale: float) -> tuple[float, dict[str, float]]:
    """Earliest possible end of n deallocations sent at t=0 into full buckets.

    Per bucket that every deallocate POST draws from (ARM writes; Compute DeleteVM per
    subscription): the n-th token is available (n - capacity) / (rate * scale) seconds after the
    start, never earlier. The last POST then needs the full LRO, lro / scale seconds. The per-VM
    DeleteVM bucket (12 per VM) never binds for one POST per VM; reads (polls) are not a floor:
    in principle one status read after the last LRO ends suffices.
    """
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
    """Seconds from the journal's first line to the first request, last request, last outcome, end;
    and the median and largest per-VM duration (POST accepted to success seen), against the LRO."""
    first = first_req = last_req = last_out = end = None
    durations: list[float] = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        t = _ts(r["ts"])
        first = t if first is None else first
        if r["type"] == "request":
            first_req = t if first_req is None else first_req
            last_req = t
        elif r["type"] == "outcome":
            last_out = t
            if r.get("duration") is not None:
                durations.append(float(r["duration"]))
        elif r["type"] == "end":
            end = t
    assert first is not None
    out = {k: (v - first if v is not None else float("nan")) for k, v in
           (("first request", first_req), ("last request", last_req), ("last outcome", last_out), ("end", end))}
    durations.sort()
    out["median duration"] = durations[len(durations) // 2] if durations else float("nan")
    out["max duration"] = durations[-1] if durations else float("nan")
    return out


def run_vmctl(sim: SimProcess, n: int, parallel: int | None, workdir: Path, label: str) -> dict[str, Any]:
    journal = workdir / f"{label}.jsonl"
    cmd = [sys.executable, "-m", "vmctl", "deallocate", "--all", "--yes", "--max-targets", str(n), "-o", "json",
           "--journal", str(journal)]
    if parallel:
        cmd += ["--parallel", str(parallel)]
    env = {**os.environ, **sim.env}
    env.pop("VMCTL_CONFIG", None)
    sim.reset_stats()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # only vmctl was reaped meanwhile
    cpu = (ru1.ru_utime - ru0.ru_utime, ru1.ru_stime - ru0.ru_stime)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"vmctl exited {proc.returncode} without a JSON report:\n{proc.stderr[-3000:]}") from None
    vms = doc["data"]["vms"]
    outcomes: dict[str, int] = {}
    for v in vms:
        outcomes[v["outcome"]] = outcomes.get(v["outcome"], 0) + 1
    failed = [v for v in vms if v["outcome"] != "succeeded"]
    throttled_failed = [v for v in failed if any(w in (v["reason"] or "").lower()
                                                 for w in ("throttl", "429", "toomanyrequests"))]
    stats = sim.stats()
    return {"wall": wall, "cpu": cpu, "exit": proc.returncode, "vms": len(vms), "outcomes": outcomes, "failed": failed,
            "throttled_failed": len(throttled_failed), "retries": sum(v["retries"] for v in vms),
            "stats": stats, "phases": journal_phases(journal), "after": doc["data"]["summary"]}


def az_worker(argv: list[str]) -> None:
    """Child process: the az-style run. argv: subscription, then rg/name pairs."""
    t0 = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient

    sub, targets = argv[0], [a.split("/", 1) for a in argv[1:]]
    client = ComputeManagementClient(DefaultAzureCredential(), sub, base_url=os.environ["VMCTL_ARM_ENDPOINT"])
    t_ready = time.perf_counter()

    def one(rg_name: list[str]) -> None:
        client.virtual_machines.begin_deallocate(rg_name[0], rg_name[1]).result()

    with ThreadPoolExecutor(AZ_WORKERS) as pool:
        list(pool.map(one, targets))
    print(json.dumps({"imports": t_ready - t0, "work": time.perf_counter() - t_ready}))


def run_az_style(sim: SimProcess, fleet: dict[str, Any]) -> dict[str, Any]:
    sub = fleet["subscriptions"][0]
    targets = []
    for g, rg in enumerate(sub["resource_groups"]):
        spec = rg["vms"][0]
        targets += [f"{rg['name']}/{spec['name'].format(i=i)}" for i in range(1, spec["count"] + 1)]
    env = {**os.environ, **sim.env}
    for k in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID"):
        env.pop(k, None)
    sim.reset_stats()
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--az-worker", sub["id"], *targets], env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"az-style run failed:\n{out.stderr[-3000:]}")
    inner = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall": wall, **inner, "stats": sim.stats()}


def count_deallocated(sim: SimProcess, sub: str) -> int:
    import urllib.request

    req = urllib.request.Request(
        f"{sim.url}/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines?api-version=2026-04-01"
        "&statusOnly=true", headers={"Authorization": f"Bearer {sim.token()}"})
    n = 0
    url: urllib.request.Request | None = req
    while url:
        with urllib.request.urlopen(url, context=sim.ssl) as r:
            page = json.load(r)
        for vm in page["value"]:
            codes = [s["code"] for s in vm["properties"]["instanceView"]["statuses"]]
            n += "PowerState/deallocated" in codes
        nxt = page.get("nextLink")
        url = urllib.request.Request(nxt, headers=req.headers) if nxt else None
    return n


def part_a(args: argparse.Namespace, workdir: Path) -> None:
    n, scale = args.vms, args.time_scale
    bound, last_post = lower_bound(n, LRO_DEALLOCATE, scale)
    writes, reads = ARM_DEFAULTS["writes"], ARM_DEFAULTS["reads"]
    delete_sub, _ = COMPUTE_DEFAULTS["DeleteVM"]
    # --parallel bounds the operations in flight. For the rate limit, not the worker bound, to set
    # the pace it must cover the peak in flight under the limit: the burst plus what the refill
    # admits during one LRO, 200 + 10/s * 45 s = 650 (simulated time, so the same at every scale),
    # plus the refill during the client's completion-discovery delay. --parallel N (1,000) gives
    # every VM a slot, so vmctl's pacer alone shapes the POSTs; the cost is N submitter threads.
    parallel = args.parallel or n
    fleet = big_fleet(n, per_group=500, throttling=True, page_size=PAGE)
    sub = fleet["subscriptions"][0]["id"]
    print(f"\nA) {n} deallocations, Azure-shaped throttling (ARM writes {writes.capacity:g} @ {writes.per_second:g}/s, "
          f"DeleteVM {delete_sub.capacity:g} @ {delete_sub.per_second * 60:g}/min, reads {reads.capacity:g} @ "
          f"{reads.per_second:g}/s), LRO {LRO_DEALLOCATE:g} s, time scale {scale:g}, "
          f"--parallel {parallel}")
    with SimProcess(fleet, time_scale=scale) as sim:
        r = run_vmctl(sim, n, parallel, workdir, "a")
        done = count_deallocated(sim, sub)
    st = r["stats"]
    print(f"   wall time (vmctl process, start to exit)  {r['wall']:8.2f} s")
    print(f"   lower bound                                {bound:8.2f} s   (last POST >= "
          + ", ".join(f"{k} {v:.2f} s" for k, v in last_post.items()) + f"; + LRO {LRO_DEALLOCATE / scale:.2f} s)")
    print(f"   efficiency lower_bound / wall              {bound / r['wall']:8.3f}     (target >= 0.85)")
    print(f"   VMs failed from throttling                 {r['throttled_failed']:8d}     (target 0)")
    print(f"   simulator throttled requests (429)         {st['throttled']:8d}     {st['throttled_by_bucket'] or ''}")
    ph = r["phases"]
    print(f"   outcomes {r['outcomes']}, exit code {r['exit']}, retries {r['retries']}, deallocated in the simulator "
          f"{done}/{n}")
    print(f"   journal phases (s from start): first request {ph['first request']:.2f}, last request "
          f"{ph['last request']:.2f}, last outcome {ph['last outcome']:.2f}, end {ph['end']:.2f}; per-VM "
          f"duration median {ph['median duration']:.2f} s, max {ph['max duration']:.2f} s (LRO {LRO_DEALLOCATE / scale:.2f} s)")
    print(f"   vmctl client CPU: user {r['cpu'][0]:.1f} s, system {r['cpu'][1]:.1f} s")
    ops = st["by_operation"]
    print(f"   requests: {st['writes']} writes, {st['reads']} reads (" +
          ", ".join(f"{k} {v}" for k, v in ops.items() if k != "identity.token") + ")")
    for v in r["failed"][:5]:
        print(f"   not succeeded: {v['resourceGroup']}/{v['name']} {v['outcome']}: {v['reason']}")


def part_b(args: argparse.Namespace, workdir: Path) -> None:
    n = args.b_vms
    fleet = big_fleet(n, per_group=500, throttling=True, page_size=PAGE, lro={"deallocate": 1})
    print(f"\nB) {n} deallocations, LRO 1 s, time scale 1, Azure-shaped throttling")
    with SimProcess(fleet, time_scale=1.0) as sim:
        v = run_vmctl(sim, n, None, workdir, "b")
        sim.control("POST", "/_sim/reset")  # back to running VMs, full buckets, fresh stats
        a = run_az_style(sim, fleet)
    print(f"   vmctl deallocate (default --parallel)      {v['wall']:8.2f} s   {v['stats']['requests']:5d} requests, "
          f"outcomes {v['outcomes']}")
    print(f"   az-style 10 workers, wait for each         {a['wall']:8.2f} s   {a['stats']['requests']:5d} requests "
          f"(start-up + imports + client {a['imports']:.2f} s, work {a['work']:.2f} s)")
    print(f"   ratio az-style / vmctl                     {a['wall'] / v['wall']:8.2f}x")
    ph = v["phases"]
    print(f"   vmctl journal phases (s): first request {ph['first request']:.2f}, last request {ph['last request']:.2f}, "
          f"last outcome {ph['last outcome']:.2f}, end {ph['end']:.2f}; per-VM duration median "
          f"{ph['median duration']:.2f} s, max {ph['max duration']:.2f} s (LRO 1 s)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--az-worker":
        az_worker(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vms", type=int, default=1000, help="part A: VMs to deallocate")
    # 2: the bound is 125 s / 2 = 62.5 s, so part A runs about a minute and the script about 80 s.
    # A higher scale weighs vmctl's fixed costs (start-up, inventory, plan, report) more heavily.
    ap.add_argument("--time-scale", type=float, default=2.0, help="part A: simulator time scale")
    ap.add_argument("--parallel", type=int, default=None, help="part A: vmctl --parallel (default: see the code)")
    ap.add_argument("--b-vms", type=int, default=50, help="part B: VMs to deallocate")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; simulator in its own process (`vmctl sim serve`)")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vmctl-bulk-") as d:
        if not args.skip_a:
            part_a(args, Path(d))
        if not args.skip_b:
            part_b(args, Path(d))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
