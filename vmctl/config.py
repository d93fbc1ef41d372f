"""Settings from the config file (flags and env are applied by the CLI on top). No network.

Lookup order: --config PATH, $VMCTL_CONFIG, ./vmctl.toml, then $XDG_CONFIG_HOME/vmctl/config.toml
(~/.config/vmctl/config.toml). The first one found is used; an explicitly named file must exist.
"""

from __future__ import annotations

import fnmatch
import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError
from .models import Vm


@dataclass(frozen=True)
class ProductionRule:
    """A VM is production when every condition given in a rule holds (rules are OR'ed)."""

    tags: tuple[str, ...] = ()
    values: tuple[str, ...] = ()  # empty: any value of one of the tags
    resource_groups: tuple[str, ...] = ()  # globs, case-insensitive
    subscriptions: tuple[str, ...] = ()  # ids or names
    # lower-cased tag names and values, made once (matches runs once per VM of the fleet)
    _names: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    _wanted: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(t.lower() for t in self.tags))
        object.__setattr__(self, "_wanted", frozenset(v.lower() for v in self.values))

    def _tag_hit(self, vm: Vm) -> bool:
        """One of the rule's tags has one of its values (any value when none is given). Tag names
        are case-insensitive; a name given twice in other cases counts by its first (as `Vm.tag`)."""
        names, wanted = self._names, self._wanted
        seen: set[str] = set()
        for k, v in vm.tags.items():
            low = k.lower()
            if low in names and low not in seen:
                seen.add(low)
                if not wanted or v.lower() in wanted:
                    return True
        return False

    def matches(self, vm: Vm) -> bool:
        if self.tags and not self._tag_hit(vm):
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
    parallel: int | None = None
    poll_interval: float = 5.0
    pace_scale: float = 1.0
    source: str = "auto"                  # inventory.source: arm | graph | auto
    graph_above_subscriptions: int = 3    # inventory.graph_above_subscriptions: auto reads more through Resource Graph
    engine: str = "auto"                  # deallocate and start: arm, batch or auto (batch.resolve_engine)
    batch_threshold: int | None = None    # auto: batch from this many acting VMs (None: batch.DEFAULT_THRESHOLD)
    retry_count: int | None = None        # batch: retryPolicy.retryCount (None: batch.DEFAULT_RETRY)
    retry_window: int | None = None       # batch: retryPolicy.retryWindowInMinutes

    def is_production(self, vm: Vm) -> bool:
        """Fail closed: a VM whose tags or properties could not be read counts as production."""
        return bool(vm.unreadable) or any(r.matches(vm) for r in self.production_rules)

    def marked(self, vm: Vm) -> Vm:
        """`vm` with its production marker from the rules: a copy only for the VMs the rules mark
        (production is False as a listing builds it), so a fleet is not copied VM by VM."""
        return replace(vm, production=True) if self.is_production(vm) else vm


_SCHEMA: dict[str, set[str]] = {
    "": {"subscriptions", "output", "cloud", "arm_endpoint", "production", "selection", "safety", "execution",
         "inventory"},
    "production": {"default_rule", "rules"},
    "selection": {"tag_values_case_sensitive"},
    "safety": {"max_targets", "max_percent"},
    "execution": {"parallel", "poll_interval", "pace_scale", "engine", "batch_threshold", "retry_count", "retry_window"},
    "inventory": {"source", "graph_above_subscriptions"},
}
_RULE_KEYS = {"tags", "values", "resource_groups", "subscriptions"}
MAX_PACE_SCALE = 100000.0  # the simulator's --time-scale bound


def pace_scale(config: Config, environ: dict[str, str] | None = None) -> float:
    """VMCTL_PACE_SCALE (the simulator's env file sets it to its --time-scale), else the config's.
    A value that is not a finite number above 0 is a ConfigError (exit 2) naming the variable."""
    env = os.environ if environ is None else environ
    text = env.get("VMCTL_PACE_SCALE")
    if not text:
        return config.pace_scale
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_PACE_SCALE:
        raise ConfigError(f"VMCTL_PACE_SCALE '{text}' is not a number above 0 and at most {MAX_PACE_SCALE:g}.",
                          "Fix or unset it (the simulator's env file sets it to its --time-scale).")
    return value


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
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a string or a list of strings.")
    if any(not v.strip() for v in value):
        raise ConfigError(f"{where}: an empty string matches nothing.", "Remove it, or give the name it should be.")
    return tuple(value)


def _bool(value: Any, where: str) -> bool:
    """A TOML boolean, never a string: `"no"` is truthy in Python, and reading it as true would
    silently keep (or drop) a guard."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false (a TOML boolean, unquoted), not {value!r}.",
                          f"Write {where.rsplit(' ', 1)[-1]} = true or false.")
    return value


def _str(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}.")
    return value


def _number(value: Any, where: str, *, whole: bool = False, high: float | None = None) -> float:
    """A finite TOML number above 0 and at most `high` (TOML has nan and inf; booleans are not numbers)."""
    kind = "whole number" if whole else "number"
    ok = not isinstance(value, bool) and (isinstance(value, int) if whole else isinstance(value, (int, float)))
    if ok and not math.isfinite(value):
        ok = False
    if ok and (value <= 0 or (high is not None and value > high)):
        ok = False
    if not ok:
        most = f" of at most {high:g}" if high is not None else ""
        raise ConfigError(f"{where} must be a positive {kind}{most}, not {value!r}.")
    return float(value)


def load_config(explicit: str | None = None) -> Config:
    path = find_config(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start + 1} is not valid UTF-8).",
                          "TOML files are UTF-8: save it as UTF-8, or give another file with --config.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}.") from exc
    return parse_config(data, path)


def parse_config(doc: Mapping[str, object], path: Path | None = None) -> Config:
    """A Config from a parsed TOML document; ConfigError naming the setting when one is wrong."""
    data: dict[str, Any] = dict(doc)  # every value is checked below before it is used
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
    if _bool(prod.get("default_rule", True), f"{where}: production.default_rule"):
        rules.append(DEFAULT_PRODUCTION_RULE)
    raw_rules = prod.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{where}: production.rules must be an array of tables ([[production.rules]]).")
    for i, r in enumerate(raw_rules):
        w = f"{where}: production.rules[{i}]"
        if not isinstance(r, dict) or not r:
            raise ConfigError(f"{w}: expected a table with tags, values, resource_groups or subscriptions.")
        unknown = sorted(set(r) - _RULE_KEYS)
        if unknown:
            raise ConfigError(f"{w}: unknown key '{unknown[0]}'.", f"Known keys: {', '.join(sorted(_RULE_KEYS))}.")
        rule = ProductionRule(
            tags=_strs(r.get("tags", []), f"{w}.tags"), values=_strs(r.get("values", []), f"{w}.values"),
            resource_groups=_strs(r.get("resource_groups", []), f"{w}.resource_groups"),
            subscriptions=_strs(r.get("subscriptions", []), f"{w}.subscriptions"),
        )
        if rule.values and not rule.tags:
            raise ConfigError(f"{w}: 'values' needs 'tags'.")
        if not (rule.tags or rule.resource_groups or rule.subscriptions):
            # it would count as a rule (so default_rule = false passes) and match no VM: fail closed
            raise ConfigError(f"{w} has no condition, so it would protect no VM.",
                              "Give it tags, resource_groups or subscriptions, or remove it.")
        rules.append(rule)
    if not rules:
        raise ConfigError(f"{where}: production.default_rule = false leaves no production rule.",
                          "Add at least one [[production.rules]] so production VMs stay protected.")
    safety = data.get("safety", {})
    max_targets = int(_number(safety.get("max_targets", 50), f"{where}: safety.max_targets", whole=True))
    max_percent = safety.get("max_percent")
    if max_percent is not None:
        max_percent = _number(max_percent, f"{where}: safety.max_percent", high=100)
    execution = data.get("execution", {})
    parallel = int(_number(execution["parallel"], f"{where}: execution.parallel", whole=True, high=1000)) \
        if "parallel" in execution else None
    poll_interval = _number(execution.get("poll_interval", 5.0), f"{where}: execution.poll_interval", high=3600)
    pace_scale = _number(execution.get("pace_scale", 1.0), f"{where}: execution.pace_scale", high=MAX_PACE_SCALE)
    engine = execution.get("engine", "auto")
    if engine not in ("arm", "batch", "auto"):
        raise ConfigError(f"{where}: execution.engine must be arm, batch or auto, not {engine!r}.")
    threshold = int(_number(execution["batch_threshold"], f"{where}: execution.batch_threshold", whole=True,
                            high=1_000_000)) if "batch_threshold" in execution else None
    retry_count = _retry(execution.get("retry_count"), f"{where}: execution.retry_count", 0, 7)
    retry_window = _retry(execution.get("retry_window"), f"{where}: execution.retry_window", 5, 120)
    output = data.get("output")
    if output is not None and output not in ("table", "json", "csv", "markdown", "tsv"):
        raise ConfigError(f"{where}: output must be table, json, csv, markdown or tsv.")
    case_sensitive = _bool(data.get("selection", {}).get("tag_values_case_sensitive", True),
                           f"{where}: selection.tag_values_case_sensitive")
    inventory = data.get("inventory", {})
    source = inventory.get("source", "auto")
    if source not in ("arm", "graph", "auto"):
        raise ConfigError(f"{where}: inventory.source must be arm, graph or auto, not {source!r}.",
                          "arm reads ARM's listings, graph Azure Resource Graph; auto picks by the scope.")
    graph_above = int(_number(inventory.get("graph_above_subscriptions", 3),
                              f"{where}: inventory.graph_above_subscriptions", whole=True, high=100000))
    return Config(
        path=path, subscriptions=_strs(data.get("subscriptions", []), f"{where}: subscriptions"),
        output=output, cloud=_str(data.get("cloud"), f"{where}: cloud"),
        arm_endpoint=_str(data.get("arm_endpoint"), f"{where}: arm_endpoint"),
        production_rules=tuple(rules), tag_values_case_sensitive=case_sensitive,
        max_targets=max_targets, max_percent=float(max_percent) if max_percent is not None else None,
        parallel=parallel, poll_interval=float(poll_interval), pace_scale=float(pace_scale),
        source=source, graph_above_subscriptions=graph_above,
        engine=str(engine), batch_threshold=threshold, retry_count=retry_count, retry_window=retry_window,
    )


def _retry(value: Any, where: str, low: int, high: int) -> int | None:
    """ComputeSchedule's retryPolicy bounds (wire §12.2): retryCount 0-7, retryWindowInMinutes 5-120."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} must be a whole number from {low} to {high}, not {value!r}.",
                          "ComputeSchedule refuses retryCount above 7 and retryWindowInMinutes outside 5-120.")
    return value
