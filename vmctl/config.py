"""Settings from the config file (flags and env are applied by the CLI on top). No network.

Lookup order: --config PATH, $VMCTL_CONFIG, ./vmctl.toml, then $XDG_CONFIG_HOME/vmctl/config.toml
(~/.config/vmctl/config.toml). The first one found is used; an explicitly named file must exist.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .models import Vm


@dataclass(frozen=True)
class ProductionRule:
    """A VM is production when every condition given in a rule holds (rules are OR'ed)."""

    tags: tuple[str, ...] = ()
    values: tuple[str, ...] = ()  # empty: any value of one of the tags
    resource_groups: tuple[str, ...] = ()  # globs, case-insensitive
    subscriptions: tuple[str, ...] = ()  # ids or names

    def matches(self, vm: Vm) -> bool:
        if self.tags:
            wanted = {v.lower() for v in self.values}
            hit = False
            for t in self.tags:
                value = vm.tag(t)
                if value is not None and (not wanted or value.lower() in wanted):
                    hit = True
                    break
            if not hit:
                return False
        if self.resource_groups and not any(
                fnmatch.fnmatchcase(vm.resource_group.lower(), g.lower()) for g in self.resource_groups):
            return False
        if self.subscriptions and not ({vm.subscription_id.lower(), vm.subscription_name.lower()}
                                       & {s.lower() for s in self.subscriptions}):
            return False
        return bool(self.tags or self.resource_groups or self.subscriptions)

    def describe(self) -> str:
        parts = []
        if self.tags:
            vals = "|".join(self.values) if self.values else "*"
            parts.append(f"tag {'|'.join(self.tags)}={vals}")
        if self.resource_groups:
            parts.append(f"group {'|'.join(self.resource_groups)}")
        if self.subscriptions:
            parts.append(f"subscription {'|'.join(self.subscriptions)}")
        return " and ".join(parts)


DEFAULT_PRODUCTION_RULE = ProductionRule(tags=("env", "environment"), values=("prod", "production"))


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    subscriptions: tuple[str, ...] = ()
    output: str | None = None
    cloud: str | None = None
    arm_endpoint: str | None = None
    production_rules: tuple[ProductionRule, ...] = (DEFAULT_PRODUCTION_RULE,)
    tag_values_case_sensitive: bool = True
    max_targets: int = 50
    max_percent: float | None = None
    parallel: int = 20
    poll_interval: float = 5.0
    pace_scale: float = 1.0
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def is_production(self, vm: Vm) -> bool:
        """Fail closed: a VM whose tags or properties could not be read counts as production."""
        return bool(vm.unreadable) or any(r.matches(vm) for r in self.production_rules)


_SCHEMA: dict[str, set[str]] = {
    "": {"subscriptions", "output", "cloud", "arm_endpoint", "production", "selection", "safety", "execution"},
    "production": {"default_rule", "rules"},
    "selection": {"tag_values_case_sensitive"},
    "safety": {"max_targets", "max_percent"},
    "execution": {"parallel", "poll_interval", "pace_scale"},
}
_RULE_KEYS = {"tags", "values", "resource_groups", "subscriptions"}


def find_config(explicit: str | None) -> Path | None:
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist.", "Check the path given to --config.")
        return p
    env = os.environ.get("VMCTL_CONFIG")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {p} (from VMCTL_CONFIG) does not exist.",
                              "Fix or unset VMCTL_CONFIG.")
        return p
    local = Path("vmctl.toml")
    if local.is_file():
        return local
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user = base / "vmctl" / "config.toml"
    return user if user.is_file() else None


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a string or a list of strings.")
    return tuple(value)


def load_config(explicit: str | None = None) -> Config:
    path = find_config(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}.") from exc
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    where = str(path) if path else "config"
    for section, allowed in _SCHEMA.items():
        body = data if section == "" else data.get(section, {})
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: [{section}] must be a table.")
        unknown = sorted(set(body) - allowed)
        if unknown:
            name = f"{section}.{unknown[0]}" if section else unknown[0]
            raise ConfigError(f"{where}: unknown setting '{name}'.",
                              f"Known settings{' in [' + section + ']' if section else ''}: {', '.join(sorted(allowed))}.")
    prod = data.get("production", {})
    rules: list[ProductionRule] = []
    if prod.get("default_rule", True):
        rules.append(DEFAULT_PRODUCTION_RULE)
    for i, r in enumerate(prod.get("rules", [])):
        w = f"{where}: production.rules[{i}]"
        if not isinstance(r, dict) or not r:
            raise ConfigError(f"{w}: expected a table with tags, values, resource_groups or subscriptions.")
        unknown = sorted(set(r) - _RULE_KEYS)
        if unknown:
            raise ConfigError(f"{w}: unknown key '{unknown[0]}'.", f"Known keys: {', '.join(sorted(_RULE_KEYS))}.")
        if "values" in r and "tags" not in r:
            raise ConfigError(f"{w}: 'values' needs 'tags'.")
        rules.append(ProductionRule(
            tags=_strs(r.get("tags", []), f"{w}.tags"), values=_strs(r.get("values", []), f"{w}.values"),
            resource_groups=_strs(r.get("resource_groups", []), f"{w}.resource_groups"),
            subscriptions=_strs(r.get("subscriptions", []), f"{w}.subscriptions"),
        ))
    if not rules:
        raise ConfigError(f"{where}: production.default_rule = false leaves no production rule.",
                          "Add at least one [[production.rules]] so production VMs stay protected.")
    safety = data.get("safety", {})
    max_targets = safety.get("max_targets", 50)
    if not isinstance(max_targets, int) or max_targets < 1:
        raise ConfigError(f"{where}: safety.max_targets must be a positive whole number.")
    max_percent = safety.get("max_percent")
    if max_percent is not None and not (isinstance(max_percent, (int, float)) and 0 < max_percent <= 100):
        raise ConfigError(f"{where}: safety.max_percent must be a number from 0 to 100.")
    execution = data.get("execution", {})
    parallel = execution.get("parallel", 20)
    if not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(f"{where}: execution.parallel must be a positive whole number.")
    poll_interval = execution.get("poll_interval", 5.0)
    pace_scale = execution.get("pace_scale", 1.0)
    for name, value in (("poll_interval", poll_interval), ("pace_scale", pace_scale)):
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{where}: execution.{name} must be a positive number.")
    output = data.get("output")
    if output is not None and output not in ("table", "json", "csv", "markdown"):
        raise ConfigError(f"{where}: output must be table, json, csv or markdown.")
    return Config(
        path=path, subscriptions=_strs(data.get("subscriptions", []), f"{where}: subscriptions"),
        output=output, cloud=data.get("cloud"), arm_endpoint=data.get("arm_endpoint"),
        production_rules=tuple(rules),
        tag_values_case_sensitive=bool(data.get("selection", {}).get("tag_values_case_sensitive", True)),
        max_targets=max_targets, max_percent=float(max_percent) if max_percent is not None else None,
        parallel=parallel, poll_interval=float(poll_interval), pace_scale=float(pace_scale), raw=data,
    )
