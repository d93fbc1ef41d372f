"""The simulator's HTTPS server: aiohttp on loopback with a test CA generated at start-up, and a
second, plain-HTTP listener for the VMs' IMDS views (imds.py; `Simulator.imds_url`).

Python's TLS server stalls ~40 ms per new connection when it sends session tickets to a client
that waits for them with Nagle on; `num_tickets = 0` (and aiohttp's TCP_NODELAY) removes it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shlex
import signal
import ssl
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TextIO

import trustme
from aiohttp import web

from .backend import Backend
from .faults import Faults
from .fleet import Fleet
from .identity import Identity
from .imds import ImdsHandler
from .responses import Handler
from .throttle import Throttle

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Simulator:
    """An ARM look-alike serving one fleet. Use as a context manager, or start()/stop()."""

    def __init__(
        self, fleet: str | Path | dict[str, Any] | Fleet, *, host: str = "127.0.0.1", port: int = 0,
        time_scale: float = 1.0, state_dir: str | Path | None = None, imds_port: int = 0,
    ) -> None:
        self.backend = Backend(fleet, time_scale=time_scale)
        f = self.backend.fleet
        self.identity = Identity(f.tenant_id, f.token_lifetime_seconds, f.identity)
        self.throttle = Throttle(f.throttling.enabled, f.throttling.overrides, time_scale)
        self.faults = Faults()
        self.faults.add(f.faults)
        self.handler = Handler(self.backend, self.identity, self.throttle, self.faults)
        self.host, self.port = host, port
        self.imds_port = imds_port
        self.imds_handler = ImdsHandler(self.backend, self.faults)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="vmctl-sim-")
            state_dir = self._tmp.name
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ca_path = self.state_dir / "ca.pem"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._imds_runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ TLS
    def _ssl_context(self) -> ssl.SSLContext:
        ca = trustme.CA(organization_name="vmctl simulator test CA")
        names = ["127.0.0.1", "localhost", "::1"]
        if self.host not in names and self.host not in ("0.0.0.0", "::"):
            names.append(self.host)
        cert = ca.issue_cert(*names)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        ctx.num_tickets = 0
        ca.cert_pem.write_to_path(str(self.ca_path))
        return ctx

    # ------------------------------------------------------------------ lifecycle
    async def _listen(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], port: int,
                      ssl_context: ssl.SSLContext | None, max_body: int, backlog: int) -> tuple[web.AppRunner, int]:
        """One listener on `self.host`: every path to `handler`; its runner and the port it got."""
        app = web.Application(client_max_size=max_body)

        async def dispatch(request: web.Request) -> web.StreamResponse:
            return await handler(request)

        app.router.add_route("*", "/{tail:.*}", dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, ssl_context=ssl_context, backlog=backlog, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        return runner, server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _start_async(self) -> None:
        self._runner, self.port = await self._listen(self.handler, self.port, self._ssl_context(), 4 * 1024 * 1024, 1024)
        # IMDS is plain HTTP (wire §14.1), on its own port so no TLS client meets it by mistake
        self._imds_runner, self.imds_port = await self._listen(self.imds_handler, self.imds_port, None, 1024 * 1024, 256)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_async())
        except BaseException as exc:  # reported to start() in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            if self._imds_runner is not None:
                loop.run_until_complete(self._imds_runner.cleanup())
            loop.close()

    def start(self) -> "Simulator":
        self._thread = threading.Thread(target=self._run, name="vmctl-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ what clients need
    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    @property
    def imds_url(self) -> str:
        """The plain-HTTP IMDS listener; a VM's IMDS is `imds_endpoint(name)` under it."""
        host = self.url.split("://", 1)[1].rsplit(":", 1)[0]
        return f"http://{host}:{self.imds_port}"

    def imds_endpoint(self, vm: str, resource_group: str | None = None, subscription: str | None = None) -> str:
        """What a guest on `vm` uses as its IMDS base (for `http://169.254.169.254`)."""
        if resource_group is None:
            return f"{self.imds_url}/vm/{vm}"
        sub = subscription or self.backend.find_vm(vm, resource_group).spec.subscription_id
        return f"{self.imds_url}/vm/{sub}/{resource_group}/{vm}"

    @property
    def subscription_ids(self) -> list[str]:
        return [s.id for s in self.backend.fleet.subscriptions]

    def env(self) -> dict[str, str]:
        """Variables that point vmctl and the stock Azure credential chain at this simulator."""
        extra = {}
        if self.backend.time_scale != 1:
            # the simulator's buckets refill F times faster; vmctl's client-side pacing follows
            extra["VMCTL_PACE_SCALE"] = f"{self.backend.time_scale:g}"
        return {
            "VMCTL_ARM_ENDPOINT": self.url,
            "AZURE_SUBSCRIPTION_ID": self.subscription_ids[0],
            "AZURE_TENANT_ID": self.backend.fleet.tenant_id,
            "REQUESTS_CA_BUNDLE": str(self.ca_path),
            "SSL_CERT_FILE": str(self.ca_path),
            "IDENTITY_ENDPOINT": f"{self.url}/msi/token",
            "IDENTITY_HEADER": self.identity.header_secret,
            "AZURE_TOKEN_CREDENTIALS": "managedidentitycredential",
            "VMCTL_SIM_IMDS_URL": self.imds_url,   # a VM's IMDS is $VMCTL_SIM_IMDS_URL/vm/NAME (guest side)
            **extra,
        }

    def write_env_file(self, path: str | Path) -> None:
        lines = [f"{k}={shlex.quote(v)}" for k, v in self.env().items()]
        p = Path(path)
        p.write_text("# vmctl simulator: `set -a; . THIS_FILE; set +a`\n" + "\n".join(lines) + "\n", encoding="utf-8")
        os.chmod(p, 0o600)  # IDENTITY_HEADER is a secret of sorts


@contextmanager
def running(fleet: str | Path | dict[str, Any] | Fleet, **kwargs: Any) -> Iterator[Simulator]:
    """In-process simulator for tests: `with running(fleet) as sim: sim.url, sim.ca_path`."""
    sim = Simulator(fleet, **kwargs)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def serve(
    fleet: str | Path, *, host: str, port: int, time_scale: float, env_file: str | None,
    allow_remote: bool, out: TextIO = sys.stdout,
) -> int:
    """Run in the foreground until SIGINT/SIGTERM."""
    if not is_loopback(host) and not allow_remote:
        raise PermissionError(
            f"refusing to bind {host}: the simulator hands out tokens to anyone who asks. "
            "Bind 127.0.0.1 (the default), or pass --allow-remote if you really mean it."
        )
    sim = Simulator(fleet, host=host, port=port, time_scale=time_scale,
                    state_dir=Path(env_file).resolve().parent / ".vmctl-sim" if env_file else None)
    if not is_loopback(host):
        print(f"WARNING: serving on {host}: anyone who can reach it gets tokens and can change the fleet.",
              file=sys.stderr)
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    sim.start()
    try:
        f = sim.backend.fleet
        print(f"vmctl simulator listening on {sim.url}", file=out)
        print(f"  CA certificate: {sim.ca_path}", file=out)
        print(f"  IMDS (plain HTTP, per VM): {sim.imds_url}/vm/<name>  (a guest's --imds-endpoint)", file=out)
        print(f"  fleet: {fleet} ({len(f.vms)} VMs in {len(f.subscriptions)} subscriptions), "
              f"time scale {time_scale:g}", file=out)
        if env_file:
            sim.write_env_file(env_file)
            print(f"  environment: {env_file}  (load it with: set -a; . {env_file}; set +a)", file=out)
        print("  control: GET /_sim/stats, POST /_sim/faults, POST /_sim/act, GET|POST /_sim/events, POST /_sim/reset;"
              " Ctrl-C stops", file=out)
        out.flush()
        while not stop.wait(0.5):
            pass
        print("vmctl simulator stopped", file=out)
        return 0
    finally:
        sim.stop()
        for s, h in old.items():
            signal.signal(s, h)
