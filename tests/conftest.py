"""Shared fixtures: an in-process simulator and real SDK clients pointed at it.

Nothing here mocks the SDK: the clients go through DefaultAzureCredential (managed identity,
App Service protocol) and TLS with the simulator's test CA, exactly as against Azure.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from vmctl.simulator import Simulator

FLEETS = Path(__file__).parent / "fleets"
BASIC = FLEETS / "basic.yaml"
SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"

_CLEAR = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_CERTIFICATE_PATH",
          "AZURE_USERNAME", "AZURE_PASSWORD", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
          "VMCTL_CONFIG", "VMCTL_OUTPUT", "VMCTL_ARM_ENDPOINT")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in _CLEAR:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "home" / ".local" / "state"))


class SimHandle:
    """A running simulator plus small helpers for its control endpoints."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.url = sim.url
        self.env = sim.env()
        self._ctx = ssl.create_default_context(cafile=str(sim.ca_path))

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self._ctx, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "/_sim/stats")

    def faults(self, *rules: dict[str, Any]) -> Any:
        return self.control("POST", "/_sim/faults", list(rules))

    def reset(self, scope: str = "all") -> None:
        self.control("POST", f"/_sim/reset?scope={scope}")


@pytest.fixture
def make_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SimHandle]]:
    """Start a simulator for a fleet (path or dict) and point this process's environment at it."""
    started: list[Simulator] = []

    def _make(fleet: Any = BASIC, **kwargs: Any) -> SimHandle:
        sim = Simulator(fleet, **kwargs).start()
        started.append(sim)
        for k, v in sim.env().items():
            monkeypatch.setenv(k, v)
        return SimHandle(sim)

    yield _make
    for s in started:
        s.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimHandle]) -> SimHandle:
    return make_sim()


@pytest.fixture
def credential(sim: SimHandle) -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@pytest.fixture
def compute(sim: SimHandle, credential: Any) -> Any:
    from azure.mgmt.compute import ComputeManagementClient

    return ComputeManagementClient(credential, SUB_A, base_url=sim.url)


@pytest.fixture
def monitor(sim: SimHandle, credential: Any) -> Any:
    from azure.mgmt.monitor import MonitorManagementClient

    return MonitorManagementClient(credential, SUB_A, base_url=sim.url)


def poll_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Call `check` until it returns something truthy; fail at the deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def power_state(compute: Any, rg: str, name: str) -> str:
    view = compute.virtual_machines.instance_view(rg, name)
    return next(s.code for s in view.statuses if s.code.startswith("PowerState/")).split("/", 1)[1]


os.environ.setdefault("AZURE_TOKEN_CREDENTIALS", "managedidentitycredential")
