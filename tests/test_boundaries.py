"""Import rules between vmctl's parts, read from the source with `ast` (nothing is imported or run).

1. Only vmctl/cloud/azure.py imports the Azure SDK (`azure.*`): everything else talks to the
   FleetClient protocol, which is what lets the executor run on tests/fakes.py.
2. vmctl/simulator/** imports nothing from vmctl outside vmctl.simulator: the simulator stands in
   for Azure and must not share vmctl's code (it would agree with vmctl's bugs).
3. Core modules (vmctl/ except cli/ and simulator/) never import vmctl.cli: the CLI is a shell
   around the core, never the other way round.
4. No import cycles among vmctl modules.

Rules 1-3 count every import, module-level or inside a function: a deferred import still couples
the modules (and loads the SDK) when it runs. Rule 4 counts module-level imports only (those run
while the module is imported, `if TYPE_CHECKING:` blocks left out): a cycle is harmful when a
module is met half-initialised during import; an import inside a function runs after both modules
are complete, and the CLI defers imports on purpose to start fast.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "vmctl"


@dataclass(frozen=True)
class Import:
    source: str        # importing module
    target: str        # imported module (as precise as can be told from the source)
    line: int
    module_level: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(mod: str, path: Path) -> list[Import]:
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, ast.Import):
            out.extend(Import(mod, a.name, node.lineno, module_level) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for a in node.names:
                sub = f"{origin}.{a.name}"
                # `from . import table` imports the submodule; `from .models import Vm` the module
                out.append(Import(mod, sub if sub in MODULES else origin, node.lineno, module_level))
        for child in ast.iter_child_nodes(node):
            inner = module_level and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(node, ast.If) and _is_type_checking(node) and child in node.body:
                inner = False
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return out


ALL = [imp for mod, path in MODULES.items() for imp in imports_of(mod, path)]


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def where(imp: Import) -> str:
    return f"{imp.source}:{imp.line} imports {imp.target}"


# Known violations today, one per rule at most: rule -> reason (the test is xfail until fixed).
KNOWN: dict[str, str] = {}


def _rule(name: str) -> object:
    marks = [pytest.mark.xfail(reason=KNOWN[name], strict=True)] if name in KNOWN else []
    return pytest.param(name, marks=marks, id=name)


def violations(rule: str) -> list[str]:
    if rule == "azure-sdk-only-in-cloud-azure":
        return [where(i) for i in ALL if within(i.target, "azure") and i.source != "vmctl.cloud.azure"]
    if rule == "simulator-self-contained":
        return [where(i) for i in ALL if within(i.source, "vmctl.simulator") and within(i.target, "vmctl")
                and not within(i.target, "vmctl.simulator")]
    if rule == "core-never-imports-cli":
        return [where(i) for i in ALL if within(i.target, "vmctl.cli") and not within(i.source, "vmctl.cli")
                and not within(i.source, "vmctl.simulator") and i.source != "vmctl.__main__"]
    if rule == "no-import-cycles":
        return [" <-> ".join(c) for c in cycles(module_graph())]
    raise AssertionError(rule)


def module_graph() -> dict[str, set[str]]:
    """vmctl module -> the vmctl modules it imports at module level."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in ALL:
        if i.module_level and i.target in MODULES and i.target != i.source:
            graph[i.source].add(i.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of a graph: its strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


RULES = ["azure-sdk-only-in-cloud-azure", "simulator-self-contained", "core-never-imports-cli", "no-import-cycles"]


@pytest.mark.parametrize("rule", [_rule(r) for r in RULES])
def test_import_rule(rule: str) -> None:
    bad = violations(rule)
    assert not bad, f"{rule}:\n  " + "\n  ".join(bad)


def test_the_parser_sees_the_imports_it_must() -> None:
    """Guards the rules against passing vacuously (a parser that saw nothing would pass them all)."""
    assert len(MODULES) > 20
    assert any(i.source == "vmctl.cloud.azure" and within(i.target, "azure") for i in ALL)
    assert any(i.source == "vmctl.executor" and i.target == "vmctl.cloud" and i.module_level for i in ALL)
    deferred = [i for i in ALL if within(i.source, "vmctl.cli") and not i.module_level]
    assert deferred, "the CLI's deferred imports should be seen as function-level"
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# ------------------------------------------------------------ typed seams
# Where `Any` may stay: the one module that talks to the SDK (its objects are loosely typed), and
# the simulator (it stands in for Azure). Raw JSON has one named alias per parser (arm_json.Json,
# planner._Json), used only inside the parser.
ANY_ALLOWED = {"vmctl.cloud.azure"}


def _public_signatures_with_any() -> list[str]:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        mod = module_name(path)
        if mod.startswith("vmctl.simulator") or mod in ANY_ALLOWED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scopes: list[ast.AST] = [tree] + [n for n in tree.body if isinstance(n, ast.ClassDef)]
        for scope in scopes:
            for node in getattr(scope, "body", []):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                    continue
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
                notes = [a.annotation for a in args if a.annotation is not None]
                notes += [node.returns] if node.returns is not None else []
                for note in notes:
                    if any(isinstance(n, ast.Name) and n.id == "Any" or
                           isinstance(n, ast.Attribute) and n.attr == "Any" for n in ast.walk(note)):
                        found.append(f"{mod}.{node.name} (line {node.lineno}): {ast.unparse(note)}")
    return found


def test_no_any_in_public_signatures() -> None:
    """A public function's parameters and result are its module's seam: typed, never `Any`."""
    assert _public_signatures_with_any() == []
