"""`vmctl sim`: the local ARM simulator."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

import typer

app = typer.Typer(help="""Run the local Azure Resource Manager simulator (rehearse against it; tests use it).

    Example:

        vmctl sim serve --fleet examples/fleet.yaml --env-file sim.env --time-scale 10
    """, no_args_is_help=True)


@app.command("serve")
def serve(
    fleet: Path = typer.Option(Path("examples/fleet.yaml"), "--fleet", "-f", metavar="PATH", help="Fleet file (YAML) to serve."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS", help="Address to bind; loopback unless --allow-remote."),
    port: int = typer.Option(0, "--port", "-p", metavar="PORT", help="Port to bind; 0 picks a free one."),
    env_file: Optional[Path] = typer.Option(None, "--env-file", metavar="PATH", help="Write KEY=VALUE lines pointing vmctl and the Azure SDK at the simulator."),
    time_scale: float = typer.Option(1.0, "--time-scale", metavar="F", help="Run simulated time F times faster (LROs, Activity Log delay, throttle refill)."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow binding a non-loopback address (it hands out tokens to anyone)."),
) -> None:
    """Serve a fleet over HTTPS on loopback until Ctrl-C.

    Example:

        vmctl sim serve --fleet examples/fleet.yaml --env-file sim.env --time-scale 10
        set -a; . ./sim.env; set +a
    """
    import math

    from .._startup import release

    release()  # a long-lived server: the garbage collector runs again (vmctl/_startup.py)
    from ..simulator.backend import MAX_TIME_SCALE
    from ..simulator.fleet import FleetError
    from ..simulator.server import serve as run
    from ._common import printable

    def refuse(message: str) -> NoReturn:
        typer.echo(f"error: {printable(message)}", err=True)
        raise typer.Exit(2)

    if not math.isfinite(time_scale) or not 0 < time_scale <= MAX_TIME_SCALE:
        refuse(f"--time-scale {time_scale:g} is not a number above 0 and at most {MAX_TIME_SCALE:g}; "
               "e.g. --time-scale 10 runs ten times faster")
    if not 0 <= port <= 65535:
        refuse(f"--port {port} is not a port number: give 0 to 65535 (0 picks a free port)")
    if not host.strip():
        refuse("--host is empty: give an address such as 127.0.0.1")
    if fleet.is_dir():
        refuse(f"--fleet {fleet} is a directory: give a fleet file (YAML), e.g. examples/fleet.yaml")
    if not fleet.is_file():
        refuse(f"--fleet {fleet} does not exist: give a fleet file (YAML), e.g. examples/fleet.yaml")
    if env_file is not None:
        from ..errors import InputError
        from ..preflight import check_writable

        try:
            check_writable(env_file, "--env-file", create_parents=True)
        except InputError as exc:
            refuse(exc.message)
    try:
        code = run(str(fleet), host=host, port=port, time_scale=time_scale,
                   env_file=str(env_file) if env_file else None, allow_remote=allow_remote)
    except (FleetError, ValueError) as exc:
        refuse(str(exc))
    except PermissionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(4)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1)
    raise typer.Exit(code)
