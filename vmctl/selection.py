"""Which VMs a command targets: the selector grammar, defined once for every command. Pure."""

from __future__ import annotations

import difflib
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
    def selects_all(self) -> bool:
        """No condition at all: every VM matches (production is decided by the caller)."""
        return not (self.ids or self.resource_groups or self.names or self.locations or self.power_states
                    or self.tags or self.exclude_tags)

    @property
    def has_selector(self) -> bool:
        """Does it narrow the fleet (--exclude-tag alone does not: it only takes VMs away from all)?"""
        return bool(self.resource_groups or self.names or self.ids or self.tags or self.locations
                    or self.power_states)

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


# ------------------------------------------------------------------ what was searched, what missed
SELECTORS = "-g, -n, --ids, --tag, --location or --power-state"


def check_scope(selector: Selector, all_vms: bool) -> None:
    """An action command must say what it targets: a selector, or --all for every VM. Pure."""
    if all_vms and selector.has_selector:
        raise InputError(f"--all selects every VM; it cannot be combined with {SELECTORS}.",
                         "Drop --all to act on the selection, or drop the selectors to act on every VM.")
    if not all_vms and not selector.has_selector:
        raise InputError("no VMs selected: without a selector an action command would act on every VM of the "
                         "subscription.",
                         f"Select VMs with {SELECTORS}, or pass --all if every VM is what you mean "
                         "(production stays excluded unless --include-production). Preview with --dry-run.")


def _closest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates nearest `word` (difflib, case-insensitive), in their own spelling."""
    by_low: dict[str, str] = {}
    for c in candidates:
        by_low.setdefault(c.lower(), c)
    stem = word.lower().strip("*?[]") or word.lower()
    return [by_low[m] for m in difflib.get_close_matches(stem, list(by_low), n=n, cutoff=0.6)]


def _closest_text(word: str, candidates: Iterable[str], what: str) -> str:
    cands = sorted(set(candidates), key=str.lower)
    near = _closest(word, cands)
    if near:
        return f"closest {what}: {', '.join(near)}"
    if not cands:
        return f"there are no {what}"
    return f"{what}: {', '.join(cands[:8])}{', ...' if len(cands) > 8 else ''}"


@dataclass(frozen=True)
class SelectionReport:
    """What a selection searched and, for a value that matched no VM at all, the closest names."""

    searched: str                   # "subscription test-sub-a (0000..., 14 VMs), for -n 'nosuch'"
    misses: tuple[str, ...] = ()    # one clause per -n / --location value that matches no VM
    reasons: tuple[str, ...] = ()   # when nothing matched: why, beyond `misses`

    @property
    def why_empty(self) -> str:
        return "; ".join(self.misses + self.reasons)


def _name_matches(pattern: str, vms: list[Vm]) -> bool:
    p = pattern.lower()
    return any(fnmatch.fnmatchcase(vm.name.lower(), p) for vm in vms)


def _describe(selector: Selector) -> list[str]:
    out = [f"-g {g}" for g in selector.resource_groups]
    out += [f"-n '{n}'" for n in selector.names]
    out += ["--ids " + ", ".join(f"{r.resource_group}/{r.name}" for r in selector.ids)] if selector.ids else []
    out += [f"--tag '{t.text}'" for t in selector.tags]
    out += [f"--exclude-tag '{t.text}'" for t in selector.exclude_tags]
    out += [f"--location {loc}" for loc in selector.locations]
    out += [f"--power-state {p}" for p in selector.power_states]
    return out


def selection_report(selector: Selector, everything: list[Vm], subscriptions: dict[str, str],
                     selected: int) -> SelectionReport:
    """Say what was searched; name each -n / --location value that matches no VM of the searched
    subscriptions (with the closest names); and, when nothing was selected, why. Pure."""
    by_sub: dict[str, int] = {}
    for vm in everything:
        by_sub[vm.subscription_id] = by_sub.get(vm.subscription_id, 0) + 1
    subs = "; ".join(f"{name} ({sid}, {by_sub.get(sid, 0)} VMs)" if name and name != sid else
                     f"{sid} ({by_sub.get(sid, 0)} VMs)" for sid, name in subscriptions.items())
    flags = _describe(selector)
    searched = ("subscription" if len(subscriptions) == 1 else "subscriptions") + f" {subs}" + \
        (f", for {' '.join(flags)}" if flags else "")
    misses: list[str] = []
    for n in selector.names:
        if not _name_matches(n, everything):
            misses.append(f"-n '{n}' matches no VM ({_closest_text(n, (vm.name for vm in everything), 'VM names')})")
    locations = {normalize_location(vm.location): vm.location for vm in everything} if selector.locations else {}
    for loc in selector.locations:
        if loc not in locations:
            misses.append(f"--location {loc}: no VM is in that location "
                          f"({_closest_text(loc, locations, 'locations with VMs')})")
    if selected:
        return SelectionReport(searched, tuple(misses))
    why: list[str] = []
    groups = {g.lower() for g in selector.resource_groups}
    in_groups = [vm for vm in everything if vm.resource_group.lower() in groups] if groups else everything
    if groups and not in_groups:
        why.append(f"{'these resource groups have' if len(groups) > 1 else 'the resource group has'} no VMs "
                   f"({_closest_text(selector.resource_groups[0], (vm.resource_group for vm in everything), 'groups with VMs')})")
    cs = selector.tag_values_case_sensitive
    for t in selector.tags:
        if any(t.matches(vm, cs) for vm in everything if not vm.unreadable):
            continue
        keys = {k for vm in everything for k in vm.tags}
        if t.key.lower() not in {k.lower() for k in keys} and t.op in ("=", "present"):
            why.append(f"--tag '{t.text}' matches no VM: no VM has a tag '{t.key}' ({_closest_text(t.key, keys, 'tag names')})")
        else:
            values = {v for vm in everything if (v := vm.tag(t.key)) is not None}
            word = t.values[0] if t.values else t.key
            why.append(f"--tag '{t.text}' matches no VM ({_closest_text(word, values, f'values of {t.key}')})")
    for p in selector.power_states:
        if not any(vm.power_state == p for vm in everything):
            states: dict[str, int] = {}
            for vm in everything:
                states[vm.power_state] = states.get(vm.power_state, 0) + 1
            why.append(f"--power-state {p}: no VM is {p} (" + (", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                                                                or "no VMs") + ")")
    if not everything:
        why.append("the subscriptions have no VMs")
    if not why and not misses:
        counts = []
        for label, sel in _single_filters(selector):
            counts.append(f"{label}: {sum(1 for vm in everything if sel.matches(vm))}")
        why.append("each filter matches some VMs, but no VM matches all of them (" + "; ".join(counts) + ")")
    return SelectionReport(searched, tuple(misses), tuple(why))


def require_match(report: SelectionReport, selected: int) -> None:
    """For action commands: a -n / --location value, or the whole selection, that matches no VM is
    refused (exit 2) with what was searched and the closest names: a typo must not pass as "nothing
    to do", nor silently leave its VMs out of a run."""
    if selected and not report.misses:
        return
    if not selected:
        why = report.why_empty
        raise InputError(f"no VM matches the selection; searched {report.searched}.",
                         f"{why[0].upper()}{why[1:]}.\n  Check the selection with `vmctl list` and the same flags; "
                         "nothing was changed.")
    first, rest = report.misses[0], report.misses[1:]
    raise InputError(f"{first[0].upper()}{first[1:]}" + "".join(f"; {m}" for m in rest) + ".",
                     "Fix or drop that value: a typo would silently leave its VMs out of the run; nothing was changed.")


def _single_filters(selector: Selector) -> list[tuple[str, Selector]]:
    """The selector split into one filter per flag, to count what each matches alone."""
    cs = selector.tag_values_case_sensitive
    out: list[tuple[str, Selector]] = []
    if selector.resource_groups:
        out.append(("-g " + ",".join(selector.resource_groups), Selector(resource_groups=selector.resource_groups)))
    if selector.names:
        out.append(("-n " + ",".join(selector.names), Selector(names=selector.names)))
    if selector.ids:
        out.append(("--ids", Selector(ids=selector.ids)))
    for t in selector.tags:
        out.append((f"--tag '{t.text}'", Selector(tags=(t,), tag_values_case_sensitive=cs)))
    for t in selector.exclude_tags:
        out.append((f"--exclude-tag '{t.text}'", Selector(exclude_tags=(t,), tag_values_case_sensitive=cs)))
    if selector.locations:
        out.append(("--location " + ",".join(selector.locations), Selector(locations=selector.locations)))
    if selector.power_states:
        out.append(("--power-state " + ",".join(selector.power_states), Selector(power_states=selector.power_states)))
    return out
