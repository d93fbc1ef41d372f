"""Start `vmctl sim serve` in a subprocess for benchmarks (so the client does not share its GIL)."""

from __future__ import annotations

import json
import os
import shlex
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def big_fleet(vms: int, subscriptions: int = 1, per_group: int = 500, throttling: bool = False,
              page_size: int = 1000, lro: dict[str, float] | None = None, vm_extra: dict[str, Any] | None = None,
              platform: dict[str, Any] | None = None, **time_cfg: Any) -> dict[str, Any]:
    subs = []
    for s in range(subscriptions):
        groups = []
        left = vms // subscriptions
        g = 0
        while left > 0:
            n = min(per_group, left)
            groups.append({"name": f"rg-{g:03d}", "vms": [
                {"name": f"vm-{g:03d}-{{i:04d}}", "count": n, "tags": {"env": "dev" if g % 3 else "test", "app": f"a{g}"},
                 **(vm_extra or {})}]})
            left -= n
            g += 1
        subs.append({"id": f"00000000-0000-0000-0000-{s + 1:012d}", "name": f"bench-{s + 1}", "resource_groups": groups})
    t: dict[str, Any] = {"activity_log_delay_seconds": 0, **time_cfg}
    if lro:
        t["lro_seconds"] = lro
    out = {"tenant_id": "72f988bf-0000-0000-0000-000000000000", "time": t,
           "paging": {"vms": page_size}, "throttling": {"enabled": throttling}, "subscriptions": subs}
    if platform:
        out["platform"] = platform
    return out


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
