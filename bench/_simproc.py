"""Start `vmctl sim serve` in a subprocess for benchmarks (so the client does not share its GIL)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def big_fleet(vms: int, subscriptions: int = 1, per_group: int = 500, throttling: bool = True,
              page_size: int | None = None, lro: dict[str, float] | None = None, vm_extra: dict[str, Any] | None = None,
              platform: dict[str, Any] | None = None, targets: dict[int, int] | None = None,
              **time_cfg: Any) -> dict[str, Any]:
    """A fleet shaped like a real subscription: groups of `per_group` VMs; the simulator's own
    defaults (page size 200, Activity Log delay, Azure-shaped throttling) unless overridden.
    `targets` {group index: n}: the first n VMs of that group carry the tag `bench=target`."""
    subs = []
    for s in range(subscriptions):
        groups = []
        left = vms // subscriptions
        g = 0
        while left > 0:
            n = min(per_group, left)
            tags = {"env": "dev" if g % 3 else "test", "app": f"a{g}"}
            hit = min(n, (targets or {}).get(g, 0)) if s == 0 else 0
            specs = []
            if hit:
                specs.append({"name": f"vm-{g:03d}-{{i:04d}}", "count": hit, "tags": {**tags, "bench": "target"},
                              **(vm_extra or {})})
            if n - hit:
                specs.append({"name": f"vm-{g:03d}-{{i:04d}}", "count": n - hit, "start": hit + 1, "tags": tags,
                              **(vm_extra or {})})
            groups.append({"name": f"rg-{g:03d}", "vms": specs})
            left -= n
            g += 1
        subs.append({"id": f"00000000-0000-0000-0000-{s + 1:012d}", "name": f"bench-{s + 1}", "resource_groups": groups})
    t: dict[str, Any] = dict(time_cfg)
    if lro:
        t["lro_seconds"] = lro
    out: dict[str, Any] = {"tenant_id": "72f988bf-0000-0000-0000-000000000000", "time": t,
                           "throttling": {"enabled": throttling}, "subscriptions": subs}
    if page_size:
        out["paging"] = {"vms": page_size}
    if platform:
        out["platform"] = platform
    return out


def target_ids(fleet: dict[str, Any]) -> list[str]:
    """ARM ids of the VMs tagged bench=target, in fleet order."""
    out = []
    for sub in fleet["subscriptions"]:
        for rg in sub["resource_groups"]:
            for spec in rg["vms"]:
                if spec.get("tags", {}).get("bench") != "target":
                    continue
                start = spec.get("start", 1)
                out += [f"/subscriptions/{sub['id']}/resourceGroups/{rg['name']}/providers/Microsoft.Compute/"
                        f"virtualMachines/{spec['name'].format(i=i)}" for i in range(start, start + spec["count"])]
    return out


def vmctl_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a timed vmctl child: Python may cache vmctl's bytecode, as it has for an
    installed package (pip compiles at install, and azure-cli's venv has its bytecode); a machine
    that sets PYTHONDONTWRITEBYTECODE would otherwise compile vmctl's modules in every run. Pair
    with one untimed run per variant, which writes the cache."""
    out = dict(os.environ if env is None else env)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    return out


def spread(values: list[float]) -> str:
    """median [min-max] (n runs)"""
    v = sorted(values)
    if not v:
        return "-"
    med = statistics.median(v)
    return f"{med:.2f} [{v[0]:.2f}-{v[-1]:.2f}] (n={len(v)})"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Baseline:
    """Another commit of vmctl, checked out beside this one (`git worktree add --detach`), so a
    benchmark can run "before" and "after" side by side in one run. Same venv, same packages:
    only vmctl's own code differs (PYTHONPATH puts the checkout first)."""

    def __init__(self, ref: str) -> None:
        root = Path(__file__).resolve().parent.parent
        self.tmp = tempfile.TemporaryDirectory(prefix="vmctl-baseline-")
        self.path = Path(self.tmp.name) / "wt"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-q", str(self.path), ref], check=True)
        self.ref = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", ref], check=True,
                                  capture_output=True, text=True).stdout.strip()
        self.root = root

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """PYTHONPATH first: run the child with a cwd outside this checkout (for `-m`/`-c` the cwd
        comes before PYTHONPATH on sys.path)."""
        env = dict(base if base is not None else os.environ)
        env["PYTHONPATH"] = str(self.path) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def close(self) -> None:
        subprocess.run(["git", "-C", str(self.root), "worktree", "remove", "--force", str(self.path)], check=False)
        self.tmp.cleanup()


class AzCli:
    """The real Azure CLI (installed by `make bench-az` into .bench/azcli), pointed at a simulator as
    a custom cloud (README: "Other ARM clients can use it as a custom cloud"), with its own
    AZURE_CONFIG_DIR so no real profile is touched."""

    @staticmethod
    def find() -> str | None:
        """VMCTL_BENCH_AZ ("" = none), else .bench/azcli of this checkout, else `az` on PATH."""
        if "VMCTL_BENCH_AZ" in os.environ:
            return os.environ["VMCTL_BENCH_AZ"] or None
        root = Path(__file__).resolve().parent.parent
        local = root / ".bench" / "azcli" / "bin" / "az"
        if local.exists():
            return str(local)
        return shutil.which("az")

    def __init__(self, sim: "SimProcess", az: str) -> None:
        self.az = az
        self.cfg = tempfile.TemporaryDirectory(prefix="vmctl-bench-az-")
        self.env = {**os.environ, **sim.env, "AZURE_CONFIG_DIR": self.cfg.name,
                    "AZURE_CORE_COLLECT_TELEMETRY": "false", "AZURE_CORE_NO_COLOR": "true",
                    "AZURE_CORE_ONLY_SHOW_ERRORS": "true", "AZURE_CORE_SURVEY_MESSAGE": "false"}
        for k in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID"):
            self.env.pop(k, None)
        self.run("cloud", "register", "-n", "VmctlSim", "--endpoint-resource-manager", sim.url)
        self.run("cloud", "set", "-n", "VmctlSim")
        self.run("login", "--identity")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([self.az, *args], env=self.env, capture_output=True, text=True)
        if check and out.returncode:
            raise RuntimeError(f"az {' '.join(args[:3])} exited {out.returncode}: {out.stderr[-2000:]}")
        return out

    def close(self) -> None:
        self.cfg.cleanup()


class SimProcess:
    def __init__(self, fleet: dict[str, Any], time_scale: float = 1.0) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="vmctl-bench-")
        d = Path(self.dir.name)
        (d / "fleet.yaml").write_text(yaml.safe_dump(fleet))
        self.env_file = d / "sim.env"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmctl", "sim", "serve", "--fleet", str(d / "fleet.yaml"),
             "--env-file", str(self.env_file), "--time-scale", str(time_scale)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not self.env_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("simulator did not start: " + (self.proc.stderr.read().decode() if self.proc.stderr else ""))
            time.sleep(0.05)
        self.env: dict[str, str] = {}
        for line in self.env_file.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                self.env[k] = shlex.split(v)[0] if v else ""
        self.url = self.env["VMCTL_ARM_ENDPOINT"]
        self.ssl = ssl.create_default_context(cafile=self.env["REQUESTS_CA_BUNDLE"])

    def token(self) -> str:
        req = urllib.request.Request(self.env["IDENTITY_ENDPOINT"] + "?api-version=2019-08-01&resource=https://management.azure.com",
                                     headers={"X-IDENTITY-HEADER": self.env["IDENTITY_HEADER"]})
        with urllib.request.urlopen(req, context=self.ssl) as r:
            return str(json.load(r)["access_token"])

    def control(self, method: str, path: str) -> Any:
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, context=self.ssl) as r:
            return json.load(r)

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "/_sim/stats")  # type: ignore[no-any-return]

    def reset_stats(self) -> None:
        self.control("POST", "/_sim/reset?scope=stats")

    def apply_env(self) -> None:
        os.environ.update(self.env)
        for k in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID"):
            os.environ.pop(k, None)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()

    def __enter__(self) -> "SimProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
