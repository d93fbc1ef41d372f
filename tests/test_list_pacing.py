"""`vmctl list` pages at the platform's rate: every page request takes a token from the pacer's
ARM read and Compute HighCostGet buckets, which each page's x-ms-ratelimit-remaining-* headers
pull down, so a listing slows down before a 429 instead of meeting one (counted on the
simulator, not timed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import BASIC, SUB_A
from vmctl.cli import app

runner = CliRunner()


@pytest.mark.assumption("VM lists counting against a HighCostGet policy is an assumption (numbers not published)")
def test_list_pages_inside_a_small_highcostget_bucket_without_a_429(make_sim: Any) -> None:
    fleet = yaml.safe_load(BASIC.read_text())
    fleet["paging"] = {"vms": 1}  # 14 VMs: 14 pages per listing, 28 list requests
    # six tokens at the rate vmctl assumes for Azure (300/min), ten times faster (time scale)
    fleet["throttling"] = {"enabled": True,
                           "compute": {"HighCostGet": {"subscription": {"capacity": 6, "per_minute": 300}}}}
    sim = make_sim(fleet, time_scale=10)
    sim.reset("stats")
    r = runner.invoke(app, ["list", "-s", SUB_A, "-o", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["summary"]["subscriptions"][0]["vmCount"] > 0
    stats = sim.stats()
    assert stats["by_operation"].get("virtualMachines.listAll", 0) >= 28
    assert stats["throttled"] == 0, stats["throttled_by_bucket"]
