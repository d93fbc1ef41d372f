"""`vmctl sim`: the local ARM simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Run the local Azure Resource Manager simulator (rehearse against it; tests use it).",
                  no_args_is_help=True)


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
    from ..simulator.fleet import FleetError
    from ..simulator.server import serve as run

    if time_scale <= 0:
        typer.echo("error: --time-scale must be a positive number, e.g. 10 for ten times faster", err=True)
        raise typer.Exit(2)
    try:
        code = run(str(fleet), host=host, port=port, time_scale=time_scale,
                   env_file=str(env_file) if env_file else None, allow_remote=allow_remote)
    except (FleetError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    except PermissionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(4)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1)
    raise typer.Exit(code)
