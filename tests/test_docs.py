"""Every command's help: it exits 0 and shows an example; docs/cli.md matches the help (generated
by scripts/gen_cli_docs.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


GEN = _gen()
COMMANDS: list[tuple[list[str], Any]] = list(GEN.commands())
# Command groups whose help has no example yet (reported; remove an entry once its help has one).
NO_EXAMPLE_YET: dict[str, str] = {}


def _param(path: list[str], cmd: Any) -> object:
    key = " ".join(path)
    marks = [pytest.mark.xfail(reason=NO_EXAMPLE_YET[key], strict=False)] if key in NO_EXAMPLE_YET else []
    return pytest.param(path, marks=marks, id=key or "vmctl")


def test_every_command_is_walked() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "stop", "deallocate", "start", "restart", "list", "show", "maintenance start", "sim serve"} <= names


@pytest.mark.parametrize("path", [_param(p, c) for p, c in COMMANDS])
def test_help_exits_0_and_shows_an_example(path: list[str]) -> None:
    code, text = GEN.help_text(path)
    assert code == 0, text
    assert "Example" in text, f"vmctl {' '.join(path)} --help has no Example"
    after = text[text.index("Example"):]
    lines = [line.strip() for line in after.splitlines()]
    examples = [line for line in lines if line.startswith("vmctl ")]
    assert examples, f"vmctl {' '.join(path)} --help: no example line starting with 'vmctl ' after 'Example'"
    own = " ".join(["vmctl", *path])
    assert any(line == own or line.startswith(own + " ") for line in examples), \
        f"no example of {own!r} itself: {examples}"


def test_cli_reference_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    rc = GEN.main(["--check"])
    diff = capsys.readouterr().out
    assert rc == 0, f"docs/cli.md is stale: run `python scripts/gen_cli_docs.py`\n{diff[:4000]}"
