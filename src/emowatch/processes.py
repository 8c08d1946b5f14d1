"""Children that stop with their parent.

A scheduler stops `emowatch retrain` with SIGTERM (`systemctl stop`, a CI cancel) or SIGINT
(Ctrl-C). Signalled alone, the retrain would die and leave its `dvc repro` child (and the stage
under it) running past the released lock, racing the next retrain. So each child runs in its own
process group, the signals become an exception (`Interrupted`), and the caller stops the whole
group: SIGTERM first (stages close their MLflow runs as KILLED), SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived; `exit_code` is the shell's convention, 128 + the signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def signals_as_interrupted() -> Iterator[None]:
    """Inside, SIGTERM and SIGINT raise `Interrupted` (main thread only)."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Inside, SIGTERM (systemd, a container stop, `kill`) ends the work as Ctrl-C does, so that
    `finally` blocks and KeyboardInterrupt handlers run (main thread only; elsewhere signals are
    left alone)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on them as before (main thread
    only; elsewhere Python never raises them anyway), so that work which must not be cut in two
    (a frame written to the video and counted in the summary) is done whole or not at all.
    Handlers rather than a signal mask: a mask holds one thread, and a signal sent to the
    process is then taken by another (the camera readers, the live page)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda n, _f: held.append(n)) for s in HELD}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])  # the handler in force before acts on it now


def _exists(send, target: int) -> bool:
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, but another user's
        return True
    return True


def pid_alive(pid: int) -> bool:
    """The process exists (zombies included)."""
    return _exists(os.kill, pid)


def group_alive(pgid: int) -> bool:
    """Some process of the group still exists (zombies included)."""
    return _exists(os.killpg, pgid)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the child's whole process group, SIGKILL to what is left after `grace_s`.
    Further stop signals wait until it is done (a second Ctrl-C must not orphan the group)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pgid = proc.pid
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
        # The leader (dvc) may be gone while the stage it started, or its workers, are not.
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        proc.wait()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def run_group(
    cmd: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    grace_s: float = 30.0,
    capture: bool = False,
) -> subprocess.CompletedProcess:
    """Run `cmd` in a new process group (output streams through unless `capture`); whatever
    interrupts the wait (`Interrupted`, KeyboardInterrupt) first stops the whole group."""
    pipe = subprocess.PIPE if capture else None
    proc = subprocess.Popen(
        list(cmd), cwd=cwd, env=env, text=True, stdout=pipe, stderr=pipe, start_new_session=True
    )
    try:
        out, err = proc.communicate()
    except BaseException:
        stop_group(proc, grace_s)
        raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)
