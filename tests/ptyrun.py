"""Run vmctl as a process: on a pseudo-terminal (as an operator's terminal would), and waiting for
one with a deadline."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time


def run_on_pty(args: list[str], env: dict[str, str] | None = None, *, cols: int = 80, rows: int = 40,
               signal_at: tuple[str, int] | None = None, timeout: float = 60) -> tuple[int, str]:
    """vmctl ARGS on a `cols` x `rows` terminal; its exit code and screen bytes. `signal_at=(text,
    signum)` sends the signal once the text is on the screen (the run fails if it never is)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "vmctl", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=dict(os.environ) if env is None else env, close_fds=True, start_new_session=True)
    os.close(slave)
    out, sent = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            if signal_at is not None and not sent and signal_at[0].encode() in out:
                proc.send_signal(signal_at[1])
                sent = True
        assert signal_at is None or sent, out.decode("utf-8", "replace")
        return proc.wait(timeout=10), out.decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def wait_or_kill(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 30) -> int:
    """The process's exit code within `timeout` seconds; killed (and the test fails) otherwise."""
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
