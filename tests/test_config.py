"""Config lookup order, the production rule and validation (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmctl.config import load_config, parse_config
from vmctl.errors import ConfigError
from vmctl.models import Vm

SUB = "00000000-0000-0000-0000-000000000001"


def vm(tags: dict[str, str], rg: str = "rg", sub_name: str = "dev") -> Vm:
    return Vm(subscription_id=SUB, subscription_name=sub_name, resource_group=rg, name="a", location="x",
              id=f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/a", tags=tags)


@pytest.mark.parametrize("tags,expected", [
    ({"env": "prod"}, True), ({"Env": "PROD"}, True), ({"ENVIRONMENT": "Production"}, True),
    ({"environment": "prod"}, True), ({"env": "dev"}, False), ({"env": "production-like"}, False),
    ({"stage": "prod"}, False), ({}, False),
])
def test_default_production_rule(tags: dict[str, str], expected: bool) -> None:
    assert parse_config({}).is_production(vm(tags)) is expected


def test_rules_add_to_the_default_and_combine_conditions() -> None:
    cfg = parse_config({"production": {"rules": [
        {"resource_groups": ["*-prod", "rg-critical"]},
        {"tags": ["tier"], "values": ["gold"], "subscriptions": ["contoso-prod"]},
        {"tags": ["pci"]},
    ]}})
    assert cfg.is_production(vm({"env": "prod"}))                  # default still applies
    assert cfg.is_production(vm({}, rg="shop-PROD"))
    assert cfg.is_production(vm({"tier": "Gold"}, sub_name="contoso-prod"))
    assert not cfg.is_production(vm({"tier": "gold"}, sub_name="contoso-dev"))
    assert cfg.is_production(vm({"PCI": "anything"}))


def test_default_rule_can_be_replaced_but_not_emptied() -> None:
    cfg = parse_config({"production": {"default_rule": False, "rules": [{"tags": ["stage"], "values": ["live"]}]}})
    assert not cfg.is_production(vm({"env": "prod"}))
    assert cfg.is_production(vm({"stage": "LIVE"}))
    with pytest.raises(ConfigError, match="leaves no production rule"):
        parse_config({"production": {"default_rule": False}})


@pytest.mark.parametrize("data,message", [
    ({"colour": 1}, "unknown setting 'colour'"),
    ({"safety": {"max_target": 5}}, "unknown setting 'safety.max_target'"),
    ({"production": {"rules": [{"values": ["x"]}]}}, "'values' needs 'tags'"),
    ({"production": {"rules": [{"tag": ["x"]}]}}, "unknown key 'tag'"),
    ({"safety": {"max_targets": 0}}, "max_targets must be a positive"),
    ({"output": "yaml"}, "output must be"),
])
def test_invalid_config(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    user = tmp_path / "home" / ".config" / "vmctl"
    user.mkdir(parents=True)
    (user / "config.toml").write_text('output = "csv"\n')
    assert load_config().output == "csv"
    (tmp_path / "vmctl.toml").write_text('output = "markdown"\n')
    assert load_config().output == "markdown"
    env_file = tmp_path / "env.toml"
    env_file.write_text('output = "json"\n')
    monkeypatch.setenv("VMCTL_CONFIG", str(env_file))
    assert load_config().output == "json"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('output = "table"\n')
    assert load_config(str(explicit)).output == "table"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.toml"))
    (tmp_path / "env.toml").write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config()


@pytest.mark.parametrize("cloud,endpoint,scope,authority", [
    ("AzureCloud", "https://management.azure.com", "https://management.azure.com/.default", "login.microsoftonline.com"),
    ("AzureUSGovernment", "https://management.usgovcloudapi.net", "https://management.usgovcloudapi.net/.default",
     "login.microsoftonline.us"),
    ("AzureChinaCloud", "https://management.chinacloudapi.cn", "https://management.chinacloudapi.cn/.default",
     "login.chinacloudapi.cn"),
])
def test_cloud_picks_endpoint_scope_and_authority(cloud: str, endpoint: str, scope: str, authority: str) -> None:
    from vmctl.cloud import Connection

    c = Connection(cloud=cloud)
    assert (c.endpoint, c.scope, c.authority) == (endpoint, scope, authority)
    other = Connection(cloud=cloud, arm_endpoint="https://127.0.0.1:8443/")
    assert other.endpoint == "https://127.0.0.1:8443" and other.scope == scope


@pytest.mark.parametrize("delta,text", [
    (30, "now"), (90, "in 2 minutes"), (-3 * 3600, "3 hours ago"), (23 * 3600 + 59 * 60, "in 1 day"),
    (59 * 60 + 50, "in 1 hour"), (47 * 3600, "in 2 days"), (-(5 * 86400 + 3600), "5 days ago"), (12 * 3600, "in 12 hours"),
])
def test_relative_times(delta: int, text: str) -> None:
    from datetime import datetime, timedelta, timezone

    from vmctl.timefmt import relative

    now = datetime(2026, 11, 22, tzinfo=timezone.utc)
    assert relative(now + timedelta(seconds=delta), now) == text
