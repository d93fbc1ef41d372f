"""Which VMs a command targets: the selector grammar, defined once for every command. Pure."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Iterable

from .errors import InputError
from .models import POWER_STATES, Vm

TAG_EXAMPLES = "env=prod, env=dev,test (any of), owner (present), env!=prod, !temporary (absent)"


@dataclass(frozen=True)
class TagExpr:
    """One --tag / --exclude-tag expression."""

    key: str
    op: str  # "=" | "!=" | "present" | "absent"
    values: tuple[str, ...] = ()
    text: str = ""

    def matches(self, vm: Vm, case_sensitive_values: bool = True) -> bool:
        value = vm.tag(self.key)
        if self.op == "present":
            return value is not None
        if self.op == "absent":
            return value is None
        if value is None:
            return self.op == "!="
        if case_sensitive_values:
            hit = value in self.values
        else:
            hit = value.lower() in {v.lower() for v in self.values}
        return hit if self.op == "=" else not hit


def _tag_error(text: str, pos: int, problem: str, flag: str) -> InputError:
    pointer = " " * (len(flag) + 2 + pos) + "^"
    return InputError(
        f"{flag} '{text}': {problem} at position {pos + 1}.\n  {flag} '{text}'\n  {pointer}",
        f"Examples: {TAG_EXAMPLES}.",
    )


def parse_tag(text: str, flag: str = "--tag") -> TagExpr:
    """Parse key=value, key=v1,v2, key, key!=value or !key; errors give the position."""
    raw = text
    if not raw.strip():
        raise _tag_error(raw, 0, "empty expression", flag)
    lead = len(raw) - len(raw.lstrip())
    s = raw.strip()
    if s.startswith("!"):
        key = s[1:].strip()
        if not key:
            raise _tag_error(raw, lead + 1, "a tag name is missing after '!'", flag)
        bad = re.search(r"[=!,]", key)
        if bad:
            return_pos = lead + 1 + (len(s[1:]) - len(s[1:].lstrip())) + bad.start()
            raise _tag_error(raw, return_pos, f"unexpected '{bad.group()}' ('!key' takes no value)", flag)
        return TagExpr(key, "absent", (), raw)
    m = re.search(r"!=|=|!", s)
    if m is None:
        if "," in s:
            raise _tag_error(raw, lead + s.index(","), "unexpected ',' (a list of values needs key=)", flag)
        return TagExpr(s, "present", (), raw)
    if m.group() == "!":
        raise _tag_error(raw, lead + m.start(), "unexpected '!' (use key!=value, or !key for absent)", flag)
    key = s[: m.start()].strip()
    if not key:
        raise _tag_error(raw, lead, "a tag name is missing before '" + m.group() + "'", flag)
    if "," in key:
        raise _tag_error(raw, lead + s.index(","), "unexpected ',' in the tag name", flag)
    rest = s[m.end():]
    if rest.startswith("=") or rest.startswith("!"):
        raise _tag_error(raw, lead + m.end(), f"unexpected '{rest[0]}'", flag)
    values = tuple(v.strip() for v in rest.split(","))
    if len(values) > 1 and any(v == "" for v in values):
        idx = rest.index(",,") if ",," in rest else (0 if rest.startswith(",") else len(rest) - 1)
        raise _tag_error(raw, lead + m.end() + idx, "an empty value in the list", flag)
    return TagExpr(key, "=" if m.group() == "=" else "!=", values, raw)


_ID = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[-\w._()]+)"
    r"/providers/Microsoft\.Compute/virtualMachines/(?P<name>[^/\s]+)/?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class VmRef:
    subscription_id: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.Compute/virtualMachines/{self.name}")

    @property
    def key(self) -> str:
        return self.id.lower()


def parse_resource_id(text: str) -> VmRef:
    m = _ID.match(text.strip())
    if not m:
        raise InputError(
            f"'{text.strip()}' is not a virtual machine resource ID.",
            ("Separate resource IDs with spaces or newlines (as az does), not commas." if "," in text else
             "Expected /subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Compute/virtualMachines/<name>."),
        )
    return VmRef(m.group("sub").lower(), m.group("rg"), m.group("name"))


def split_ids(lines: Iterable[str]) -> list[str]:
    """IDs from text as `az ... -o tsv` prints them: whitespace-separated, blank lines and # comments ignored."""
    out: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0]
        out.extend(p for p in line.split() if p)
    return out


def _json_ids(doc: object, where: str) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, list):
        return [i for item in doc for i in _json_ids(item, where)]
    if isinstance(doc, dict):
        if isinstance(doc.get("id"), str):
            return [doc["id"]]
        if "schema" in doc and isinstance(doc.get("data"), list):  # a vmctl -o json envelope
            return _json_ids(doc["data"], where)
        if isinstance(doc.get("vm"), dict):  # a vm-show item
            return _json_ids(doc["vm"], where)
    raise InputError(f"--ids {where}: a JSON item has no resource ID ({json.dumps(doc)[:80]}).",
                     "Give IDs one per line, a JSON list of IDs, or JSON objects with an \"id\" (az vm list output).")


def ids_from_text(text: str, where: str = "") -> list[str]:
    """Resource IDs from text: as `az ... -o tsv` prints them (whitespace- or newline-separated,
    blank lines and # comments ignored) or, as az also accepts, JSON: a list of IDs, objects with an
    `id` (`az vm list` output), or a vmctl `-o json` document."""
    head = text.lstrip()[:1]
    if head in ("[", "{"):
        try:
            doc = json.loads(text)
        except ValueError:
            pass  # not JSON after all: no resource ID starts with [ or {, so the ID check says what is wrong
        else:
            return _json_ids(doc, where or "JSON")
    return split_ids(text.splitlines())


def normalize_location(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


@dataclass(frozen=True)
class Selector:
    resource_groups: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    ids: tuple[VmRef, ...] = ()
    tags: tuple[TagExpr, ...] = ()
    exclude_tags: tuple[TagExpr, ...] = ()
    locations: tuple[str, ...] = ()
    power_states: tuple[str, ...] = ()
    include_production: bool = False
    tag_values_case_sensitive: bool = True
    _groups_lower: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_groups_lower", frozenset(g.lower() for g in self.resource_groups))

    @property
    def subscriptions_from_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.subscription_id for r in self.ids))

    def matches(self, vm: Vm) -> bool:
        """Does the VM fall in the selection (production is decided by the caller)?"""
        if self.ids and vm.key not in {r.key for r in self.ids}:
            return False
        if self._groups_lower and vm.resource_group.lower() not in self._groups_lower:
            return False
        if self.names and not any(fnmatch.fnmatchcase(vm.name.lower(), n.lower()) for n in self.names):
            return False
        if self.locations and normalize_location(vm.location) not in self.locations:
            return False
        if self.power_states and vm.power_state not in self.power_states:
            return False
        if vm.unreadable and (self.tags or self.exclude_tags):
            return False  # its tags are unknown: neither a match nor safely outside an exclusion
        cs = self.tag_values_case_sensitive
        if not all(t.matches(vm, cs) for t in self.tags):
            return False
        if any(t.matches(vm, cs) for t in self.exclude_tags):
            return False
        return True


def build_selector(
    *, resource_groups: Iterable[str] = (), names: Iterable[str] = (), ids: Iterable[str] = (),
    tags: Iterable[str] = (), exclude_tags: Iterable[str] = (), locations: Iterable[str] = (),
    power_states: Iterable[str] = (), include_production: bool = False, tag_values_case_sensitive: bool = True,
) -> Selector:
    """Validate raw flag values into a Selector; every problem is an InputError (exit 2)."""
    ids = list(ids)
    groups, names = tuple(resource_groups), tuple(names)
    if ids and (groups or names):
        raise InputError("--ids cannot be combined with --resource-group or --name.",
                         "Give full resource IDs alone, or select by group and name.")
    refs = tuple(dict.fromkeys(parse_resource_id(i) for i in ids))
    states = tuple(s.lower() for s in power_states)
    for s in states:
        if s not in POWER_STATES:
            raise InputError(f"--power-state '{s}' is not a power state.",
                             f"Use one of: {', '.join(POWER_STATES)}.")
    for g in groups:
        if not re.fullmatch(r"[-\w._()]{1,90}", g) or g.endswith("."):
            raise InputError(f"--resource-group '{g}' is not a valid resource group name.",
                             "Names are 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'.")
    return Selector(
        resource_groups=groups, names=names, ids=refs,
        tags=tuple(parse_tag(t, "--tag") for t in tags),
        exclude_tags=tuple(parse_tag(t, "--exclude-tag") for t in exclude_tags),
        locations=tuple(normalize_location(loc) for loc in locations),
        power_states=states, include_production=include_production,
        tag_values_case_sensitive=tag_values_case_sensitive,
    )
