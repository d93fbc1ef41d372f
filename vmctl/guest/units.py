"""systemd units for the guest side (`vmctl guest install`): the watcher service, and a shutdown
unit whose stop action runs the drain hook, so a stop, deallocate or restart from any tool
(portal, az, vmctl) drains the VM inside Azure's 5-minute graceful-shutdown window.

Hand-written text, not a library: two small unit files with a fixed shape; the only subtle part
is systemd's command-line quoting (`quote`). Nothing here calls systemctl.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..journal import write_private

MARKER = "# Written by `vmctl guest install`; `vmctl guest uninstall` removes it."
WATCH_UNIT = "vmctl-guest.service"
DRAIN_UNIT = "vmctl-guest-drain.service"
UNIT_DIR = Path("etc/systemd/system")
GRACEFUL_WINDOW = 300.0   # Azure powers the VM off 5 minutes after asking it to shut down (seeds)
STOP_SLACK = 15.0         # TimeoutStopSec = hook timeout + this, and always below the window


@dataclass(frozen=True)
class UnitFile:
    path: Path
    text: str


def quote(arg: str) -> str:
    """One argument of an Exec= line: double-quoted, with systemd's specifiers (%) and variable
    expansion ($) escaped, so a hook command reaches vmctl exactly as given."""
    inner = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{inner}"'


def units(root: Path, vmctl: list[str], drain_hook: str, recover_hook: str | None, hook_timeout: float,
          approve: str, journal: Path, imds_endpoint: str | None) -> list[UnitFile]:
    stop_timeout = hook_timeout + STOP_SLACK
    if stop_timeout >= GRACEFUL_WINDOW:
        raise InputError(f"--hook-timeout {hook_timeout:g} leaves no room in Azure's 5-minute shutdown window.",
                         f"Give at most {GRACEFUL_WINDOW - STOP_SLACK - 1:g} seconds.")
    common = ["--drain-hook", drain_hook, "--hook-timeout", f"{hook_timeout:g}", "--journal", str(journal)]
    watch = [*vmctl, "guest", "watch", *common, "--approve", approve]
    if recover_hook:
        watch += ["--recover-hook", recover_hook]
    env = f"Environment={quote('VMCTL_IMDS_ENDPOINT=' + imds_endpoint)}\n" if imds_endpoint else ""
    watch_text = f"""{MARKER}
[Unit]
Description=vmctl guest watcher: drain this VM before Azure Scheduled Events (reboot, redeploy, eviction)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
{env}ExecStart={' '.join(quote(a) for a in watch)}
Restart=on-failure
RestartSec=5
TimeoutStopSec={stop_timeout:g}

[Install]
WantedBy=multi-user.target
"""
    drain = [*vmctl, "guest", "drain", *common]
    drain_text = f"""{MARKER}
[Unit]
Description=vmctl guest: drain this VM when it shuts down (stop, deallocate or restart from any tool)
Wants=network-online.target
After=network-online.target {WATCH_UNIT}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
{env}ExecStop={' '.join(quote(a) for a in drain)}
TimeoutStopSec={stop_timeout:g}

[Install]
WantedBy=multi-user.target
"""
    base = root / UNIT_DIR
    return [UnitFile(base / WATCH_UNIT, watch_text), UnitFile(base / DRAIN_UNIT, drain_text)]


def _ours(path: Path) -> bool:
    try:
        return path.read_text(encoding="utf-8", errors="replace").startswith(MARKER)
    except OSError:
        return False


def install(files: list[UnitFile], force: bool = False) -> list[Path]:
    """Write the units (mode 0600 then 0644, atomically). An existing unit vmctl did not write is
    refused (InputError) unless `force`."""
    for f in files:
        if f.path.exists() and not _ours(f.path) and not force:
            raise InputError(f"{f.path} exists and was not written by vmctl.",
                             "Move it away, or give --force to replace it.")
    for f in files:
        try:
            f.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {f.path.parent}: {exc.strerror}.",
                             "Run as root, or give --root DIR to write elsewhere.") from exc
        write_private(f.path, f.text)
        f.path.chmod(0o644)  # systemd reads units as any user; they hold no secret
    return [f.path for f in files]


def uninstall(root: Path) -> tuple[list[Path], list[Path]]:
    """Remove the units vmctl wrote: (removed, left alone because vmctl did not write them)."""
    removed, foreign = [], []
    for name in (WATCH_UNIT, DRAIN_UNIT):
        p = root / UNIT_DIR / name
        if not p.exists():
            continue
        if not _ours(p):
            foreign.append(p)
            continue
        try:
            p.unlink()
        except OSError as exc:
            raise InputError(f"cannot remove {p}: {exc.strerror}.", "Run as root, or give --root DIR.") from exc
        removed.append(p)
    return removed, foreign
