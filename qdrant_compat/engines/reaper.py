"""Ends a local Ray's processes when the driver that started them dies without shutting Ray down (SIGKILL, OOM).

``ray.init()`` on this machine starts a GCS server and a raylet, which die with the driver, and two agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) which, measured with Ray 2.60, outlive a SIGKILLed driver
by about 65 s, holding their ports and memory. :func:`watch` snapshots the driver's descendants right after
``ray.init()`` and starts a detached watcher (``python -m qdrant_compat.engines.reaper``) that, once the driver
is gone, terminates each of them that is still the same process (same pid *and* start time, so a reused pid is
never touched). Linux only (it reads ``/proc``); elsewhere :func:`watch` does nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time in clock ticks)`` of a live process, or None."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if fields[0] == "Z":  # a zombie has exited already
        return None
    return int(fields[1]), int(fields[19])


def descendants(pid: int | None = None) -> list[tuple[int, int]]:
    """Every live descendant of ``pid`` (default: this process) as ``(pid, start time)``; empty without ``/proc``."""
    if not PROC.is_dir():
        return []
    pid = pid or os.getpid()
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for d in PROC.iterdir():
        if d.name.isdigit() and (st := _stat(int(d.name))) is not None:
            children.setdefault(st[0], []).append(int(d.name))
            starts[int(d.name)] = st[1]
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append((p, starts[p]))
        todo.extend(children.get(p, []))
    return out


def is_alive(pid: int, start: int) -> bool:
    """Whether the process ``pid`` that started at ``start`` (clock ticks) is still running."""
    st = _stat(pid)
    return st is not None and st[1] == start


def watch(before: set[tuple[int, int]] | None = None) -> subprocess.Popen[bytes] | None:
    """Start the watcher for this process and the descendants it has now that were not in ``before`` (the
    snapshot :func:`descendants` took just before ``ray.init()``: a caller's own children are never touched).

    Returns the watcher (the caller may end it after a clean shutdown), or None where there is no ``/proc``.
    """
    if not PROC.is_dir() or not sys.platform.startswith("linux"):
        return None
    driver = os.getpid()
    st = _stat(driver)
    procs = [p for p in descendants(driver) if p not in (before or set())]
    if st is None or not procs:
        return None
    args = [sys.executable, "-m", "qdrant_compat.engines.reaper", f"{driver}:{st[1]}", *(f"{p}:{s}" for p, s in procs)]
    log.debug("watching %d Ray processes of driver %d", len(procs), driver)
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def reap(driver: tuple[int, int], procs: list[tuple[int, int]], *, poll: float = 0.5, grace: float = 3.0) -> int:
    """Wait for ``driver`` to end, then SIGTERM (and after ``grace`` seconds SIGKILL) every process of ``procs``
    that is still the same process. Returns how many were signalled."""
    while is_alive(*driver):
        time.sleep(poll)
    alive = [p for p in procs if is_alive(*p)]
    for pid, _ in alive:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_alive(*p) for p in alive):
        time.sleep(0.1)
    for pid, start in alive:
        if is_alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return len(alive)


def _pair(text: str) -> tuple[int, int]:
    pid, start = text.split(":")
    return int(pid), int(start)


if __name__ == "__main__":
    reap(_pair(sys.argv[1]), [_pair(a) for a in sys.argv[2:]])
