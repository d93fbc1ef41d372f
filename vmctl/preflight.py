"""Checks of flag values that can be made before the first request, so that a run is refused
(InputError, exit 2, one sentence naming the flag and the fix) before it has touched anything,
rather than failing halfway. Nothing here prints, sends a request or creates a file.

The CLI calls these right after parsing its flags: --query, --journal/--report/--plan-out,
--pre-hook/--post-hook, --hook-env, --bundle.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

from .errors import InputError
from .hooks import ENV_NAME

# words the shell itself handles: nothing on disk to check
SHELL_WORDS = frozenset({
    "!", "{", "}", "[", "[[", "]]", ".", ":", "alias", "bg", "break", "case", "cd", "command", "continue", "echo",
    "eval", "exec", "exit", "export", "false", "fg", "for", "function", "getopts", "hash", "if", "jobs", "kill",
    "let", "local", "printf", "pwd", "read", "readonly", "return", "select", "set", "shift", "source", "test",
    "time", "times", "trap", "true", "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
})
_ASSIGNMENT = ENV_NAME.pattern + "=.*"


def check_query(expr: str | None) -> None:
    """--query must be a JMESPath expression that compiles."""
    if expr is None:
        return
    if not expr.strip():
        raise InputError("--query is empty.", "Give a JMESPath expression, e.g. --query \"[].id\", or leave it out.")
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        jmespath.compile(expr)
    except (JMESPathError, ValueError, RecursionError) as exc:
        problem = " ".join(str(exc).split())
        raise InputError(f"--query '{expr}' is not a valid JMESPath expression: {problem}.",
                         "Example: --query \"[?powerState=='stopped'].id\"") from None


def _nearest_dir(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _writable_dir(d: Path, label: str) -> None:
    if not d.is_dir():
        raise InputError(f"{label}: {d} is not a directory.", "Give a path inside a directory.")
    if not os.access(d, os.W_OK | os.X_OK):
        raise InputError(f"{label}: directory {d} is not writable.", "Give a path in a directory you can write to.")


def check_writable(path: Path | None, flag: str, *, must_not_exist: bool = False,
                   create_parents: bool = False) -> None:
    """`path` can be written: not a directory, its directory exists (or, with `create_parents`,
    the nearest existing ancestor) and is writable, an existing file is writable; with
    `must_not_exist` (--journal) it must not exist at all. Creates nothing."""
    if path is None:
        return
    label = f"{flag} {path}"
    if str(path).strip() == "":
        raise InputError(f"{flag} is empty.", "Give a file path.")
    if path.is_dir():
        raise InputError(f"{label} is a directory.", "Give a file path.")
    if os.path.lexists(path):
        if must_not_exist:
            what = "a journal" if flag == "--journal" else "it"
            raise InputError(f"{label} already exists; {what} is never overwritten: give a new path.")
        if not os.access(path, os.W_OK):
            raise InputError(f"{label} is not writable.", "Give another path, or fix its permissions.")
    parent = path.absolute().parent
    if create_parents:
        parent = _nearest_dir(parent)
    elif not parent.exists():
        raise InputError(f"{label}: directory {parent} does not exist.", "Create it first, or give another path.")
    _writable_dir(parent, label)


def check_bundle_dir(path: Path | None, flag: str = "--bundle") -> None:
    """A bundle goes into a new or empty directory, which (or whose nearest existing ancestor) can
    be written. Creates nothing."""
    if path is None:
        return
    label = f"{flag} {path}"
    if os.path.lexists(path):
        if not path.is_dir():
            raise InputError(f"{label} exists and is not a directory.", "Give a new or empty directory.")
        try:
            empty = not any(path.iterdir())
        except OSError as exc:
            raise InputError(f"{label} cannot be read: {exc.strerror}.", "Give a new or empty directory.") from exc
        if not empty:
            raise InputError(f"{label} is not empty.", "Give a new or empty directory: a bundle is never overwritten.")
        _writable_dir(path, label)
        return
    _writable_dir(_nearest_dir(path.absolute().parent), label)


def check_hook(command: str | None, flag: str) -> None:
    """The hook's program exists: the first word of the command (after NAME=value assignments) is an
    executable file (a path, relative to the current directory) or a command found on PATH. Shell
    keywords and builtins, and words the shell expands ($VAR, `...`, ~user), are not checked."""
    if command is None:
        return
    if not command.strip():
        raise InputError(f"{flag} is empty.", f"Give the command to run, e.g. {flag} ./drain.sh, or leave it out.")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise InputError(f"{flag} '{command}' is not a valid shell command: {exc}.",
                         "Check the quotes.") from None
    while words and re.fullmatch(_ASSIGNMENT, words[0], re.DOTALL):
        words.pop(0)
    if not words:
        return
    prog = words[0]
    if prog in SHELL_WORDS or prog[:1] in "({!" or any(c in prog for c in "$`*?["):
        return
    if prog.startswith("~"):
        expanded = os.path.expanduser(prog)
        if expanded == prog:
            return
        prog = expanded
    head = f"{flag} '{command}'"
    if "/" in prog:
        p = Path(prog)
        if not p.exists():
            raise InputError(f"{head}: {words[0]} does not exist.",
                             "Give the script's path (relative to the current directory, or absolute).")
        if p.is_dir():
            raise InputError(f"{head}: {words[0]} is a directory.", "Give the script's path.")
        if not os.access(p, os.X_OK):
            raise InputError(f"{head}: {words[0]} is not executable (chmod +x {shlex.quote(words[0])}).",
                             f"Or run it through its interpreter: {flag} 'sh {words[0]}'.")
        return
    if shutil.which(prog) is None:
        raise InputError(f"{head}: {prog} is not a command on PATH.",
                         f"Give a path to the script (e.g. ./{prog}) or install the command.")


def check_hook_env(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """--hook-env NAME (repeatable): each an environment variable name, never NAME=VALUE (the command
    line is recorded in the journal). Returns them, deduplicated, in order."""
    out: list[str] = []
    for n in names:
        if "=" in n:
            raise InputError(f"--hook-env '{n.split('=', 1)[0]}=...' gives a value; --hook-env takes a name.",
                             "Set the variable in the environment and give its name: the command line is "
                             "recorded in the journal.")
        if not ENV_NAME.fullmatch(n):
            raise InputError(f"--hook-env '{n}' is not an environment variable name.",
                             "Give a name such as HTTPS_PROXY (letters, digits and _, not starting with a digit).")
        if n not in out:
            out.append(n)
    return tuple(out)


TLS_ENV = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")


def check_tls_env(environ: dict[str, str] | None = None) -> None:
    """A CA bundle named in the environment must exist: the SDK (requests) otherwise fails every
    request, sign-in first, with an error that reads like a credential problem."""
    env = os.environ if environ is None else environ
    for name in TLS_ENV:
        value = env.get(name)
        if value and not (os.path.isfile(value) or os.path.isdir(value)):
            raise InputError(
                f"{name} names {value}, which does not exist: no HTTPS request can be verified.",
                "Point it at a CA bundle (for the simulator, the ca.pem path in its env file; a simulator "
                f"restart makes a new one), or unset {name} to use the system's CAs.")
