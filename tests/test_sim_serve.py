"""`vmctl sim serve` as an operator runs it: foreground process, env file, clean stop."""

from __future__ import annotations

import json
import os
import shlex
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import BASIC, poll_until


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    env_file = tmp_path / "sim.env"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmctl", "sim", "serve", "--fleet", str(BASIC), "--env-file", str(env_file), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, env_file


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = shlex.split(v)[0]
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_writes_env_file_answers_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    proc, env_file = _start(tmp_path)
    try:
        poll_until(lambda: env_file.exists() and "AZURE_TOKEN_CREDENTIALS" in env_file.read_text(), timeout=30)
        env = _read_env(env_file)
        assert set(env) == {"VMCTL_ARM_ENDPOINT", "AZURE_SUBSCRIPTION_ID", "AZURE_TENANT_ID", "REQUESTS_CA_BUNDLE",
                            "SSL_CERT_FILE", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_TOKEN_CREDENTIALS",
                            "VMCTL_SIM_IMDS_URL"}
        assert env["VMCTL_SIM_IMDS_URL"].startswith("http://127.0.0.1:")
        assert env["VMCTL_ARM_ENDPOINT"].startswith("https://127.0.0.1:")
        assert env["AZURE_SUBSCRIPTION_ID"] == "00000000-0000-0000-0000-00000000000a"
        assert env["AZURE_TOKEN_CREDENTIALS"] == "managedidentitycredential"
        assert oct(os.stat(env_file).st_mode & 0o777) == "0o600"
        ctx = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])  # verifies against the test CA
        stats = json.load(urllib.request.urlopen(env["VMCTL_ARM_ENDPOINT"] + "/_sim/stats", context=ctx))
        assert stats["writes"] == 0
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "listening on https://127.0.0.1:" in out and "CA certificate:" in out and "stopped" in out


def test_sdk_works_from_the_env_file_alone(tmp_path: Path) -> None:
    """The acceptance script: DefaultAzureCredential + base_url from the env file, in a fresh process."""
    proc, env_file = _start(tmp_path, "--time-scale", "100")
    try:
        poll_until(lambda: env_file.exists() and "AZURE_TOKEN_CREDENTIALS" in env_file.read_text(), timeout=30)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
        env.update(_read_env(env_file))
        script = Path(__file__).parents[1] / "examples" / "sdk_quickstart.py"
        run = subprocess.run([sys.executable, str(script), "rg-app", "app-03"], env=env, capture_output=True,
                             text=True, timeout=120)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert run.returncode == 0, run.stderr
    assert "app-03" in run.stdout and "VM stopped" in run.stdout
    assert "Succeeded  Microsoft.Compute/virtualMachines/powerOff/action  by tester@contoso.example" in run.stdout


def test_non_loopback_bind_needs_explicit_flag(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "vmctl", "sim", "serve", "--fleet", str(BASIC), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 4
    assert "refusing to bind 0.0.0.0" in run.stderr and "--allow-remote" in run.stderr


def test_bad_fleet_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "f.yaml"
    bad.write_text("subscriptions:\n  - id: nope\n")
    run = subprocess.run([sys.executable, "-m", "vmctl", "sim", "serve", "--fleet", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "subscriptions[0].id: a subscription id is a GUID" in run.stderr
    assert "Traceback" not in run.stderr
