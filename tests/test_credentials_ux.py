"""What an operator sees when signing in cannot work: one sentence and the fix, not the SDK's log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import SimHandle

VMCTL = str(Path(sys.executable).parent / "vmctl")


def test_a_missing_ca_bundle_is_named_not_blamed_on_sign_in(sim: SimHandle, tmp_path: Path) -> None:
    env = {**os.environ, **sim.env, "REQUESTS_CA_BUNDLE": str(tmp_path / "gone.pem")}
    r = subprocess.run([VMCTL, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"REQUESTS_CA_BUNDLE names {tmp_path / 'gone.pem'}, which does not exist" in r.stderr
    assert "az login" not in r.stderr
    assert sim.stats()["requests"] == 0  # refused before any request, the token request included


def test_no_credential_is_one_error_without_the_sdks_log(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
           "AZURE_TOKEN_CREDENTIALS": "EnvironmentCredential"}  # only the environment: nothing there, fails fast
    r = subprocess.run([VMCTL, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and len(lines) == 2, r.stderr  # the sentence and the fix
    assert "DefaultAzureCredential failed" not in r.stderr and "troubleshoot" not in r.stderr


def test_debug_still_shows_the_sdks_account(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
           "AZURE_TOKEN_CREDENTIALS": "EnvironmentCredential"}
    r = subprocess.run([VMCTL, "list", "--debug"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "azure.identity" in r.stderr


