"""The selector grammar, table-driven over plain data (no network)."""

from __future__ import annotations

import pytest

from vmctl.errors import InputError
from vmctl.models import Vm
from vmctl.selection import build_selector, parse_resource_id, parse_tag, split_ids

SUB = "00000000-0000-0000-0000-000000000001"


def vm(name: str, rg: str = "rg-web", tags: dict[str, str] | None = None, power: str = "running",
       location: str = "westeurope") -> Vm:
    return Vm(subscription_id=SUB, resource_group=rg, name=name, location=location, power_state=power,
              id=f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}",
              tags=tags or {})


FLEET = [
    vm("web-01", tags={"env": "dev", "app": "web"}),
    vm("web-02", tags={"Env": "Dev", "app": "web", "temporary": "yes"}),
    vm("db-01", rg="rg-data", tags={"env": "prod", "app": "sql"}, power="stopped"),
    vm("db-02", rg="RG-DATA", tags={"environment": "production"}, power="deallocated", location="northeurope"),
    vm("build-01", rg="rg-build", tags={"env": "test", "owner": ""}),
    vm("bare-01", rg="rg-build"),
]


def names(**kw: object) -> list[str]:
    sel = build_selector(**kw)  # type: ignore[arg-type]
    return [v.name for v in FLEET if sel.matches(v)]


@pytest.mark.parametrize("kw,expected", [
    ({}, ["web-01", "web-02", "db-01", "db-02", "build-01", "bare-01"]),
    ({"tags": ["env=dev"]}, ["web-01"]),                                   # values are exact by default
    ({"tags": ["ENV=dev"]}, ["web-01"]),                                   # names are case-insensitive
    ({"tags": ["env=dev,Dev"]}, ["web-01", "web-02"]),                     # any of
    ({"tags": ["env"]}, ["web-01", "web-02", "db-01", "build-01"]),        # present
    ({"tags": ["!env"]}, ["db-02", "bare-01"]),                            # absent
    ({"tags": ["env!=dev"]}, ["web-02", "db-01", "db-02", "build-01", "bare-01"]),  # absent counts as !=
    ({"tags": ["owner="]}, ["build-01"]),                                  # empty value
    ({"tags": ["app=web", "temporary"]}, ["web-02"]),                      # all must match
    ({"exclude_tags": ["temporary", "app=sql"]}, ["web-01", "db-02", "build-01", "bare-01"]),  # any excludes
    ({"resource_groups": ["rg-data"]}, ["db-01", "db-02"]),                # group names are case-insensitive
    ({"names": ["web-*"]}, ["web-01", "web-02"]),
    ({"names": ["WEB-0[1]", "bare-*"]}, ["web-01", "bare-01"]),
    ({"power_states": ["stopped", "deallocated"]}, ["db-01", "db-02"]),
    ({"locations": ["North Europe"]}, ["db-02"]),
    ({"ids": [FLEET[0].id.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")]}, ["web-01"]),
    ({"tags": ["env=dev,Dev"], "tag_values_case_sensitive": False}, ["web-01", "web-02"]),
    ({"tags": ["env=DEV"], "tag_values_case_sensitive": False}, ["web-01", "web-02"]),
])
def test_selector_forms(kw: dict, expected: list[str]) -> None:
    assert names(**kw) == expected


@pytest.mark.parametrize("text,position,problem", [
    ("", 1, "empty expression"),
    ("=prod", 1, "a tag name is missing"),
    ("env==prod", 5, "unexpected '='"),
    ("env=!prod", 5, "unexpected '!'"),
    ("!", 2, "a tag name is missing after '!'"),
    ("!env=prod", 5, "'!key' takes no value"),
    ("env!prod", 4, "unexpected '!'"),
    ("env=a,,b", 6, "an empty value"),
    ("a,b", 2, "unexpected ','"),
])
def test_malformed_tag_expressions_name_the_position(text: str, position: int, problem: str) -> None:
    with pytest.raises(InputError) as err:
        parse_tag(text)
    msg = str(err.value)
    assert f"at position {position}" in msg and problem in msg
    assert "Examples: env=prod" in msg
    assert err.value.exit_code == 2


def test_tag_values_with_spaces_and_equals_inside() -> None:
    t = parse_tag("cost center=R&D, Ops")
    assert (t.key, t.op, t.values) == ("cost center", "=", ("R&D", "Ops"))
    assert parse_tag("url=a=b").values == ("a=b",)


@pytest.mark.parametrize("text", [
    "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/a",
    "web-01",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/",
])
def test_invalid_resource_ids(text: str) -> None:
    with pytest.raises(InputError, match="is not a virtual machine resource ID"):
        parse_resource_id(text)


def test_resource_id_is_case_insensitive() -> None:
    ref = parse_resource_id(f"/SUBSCRIPTIONS/{SUB.upper()}/resourcegroups/rg/PROVIDERS/microsoft.compute/VIRTUALMACHINES/a")
    assert (ref.subscription_id, ref.resource_group, ref.name) == (SUB, "rg", "a")


def test_split_ids_reads_tsv_lines() -> None:
    assert split_ids(["a b", "", "  # comment", "c # trailing"]) == ["a", "b", "c"]


@pytest.mark.parametrize("kw,message", [
    ({"ids": [FLEET[0].id], "resource_groups": ["rg"]}, "--ids cannot be combined"),
    ({"power_states": ["asleep"]}, "--power-state 'asleep' is not a power state"),
    ({"resource_groups": ["bad/name"]}, "is not a valid resource group name"),
    ({"exclude_tags": ["=x"]}, "--exclude-tag '=x'"),
])
def test_conflicting_and_invalid_flags(kw: dict, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        build_selector(**kw)
