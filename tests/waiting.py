"""The tests' one way to wait for a condition, and their one way to stop a process.

- ``await eventually(condition, within, what)``: poll ``condition`` (a function returning a truth value, or an
  awaitable of one) every ``every`` seconds until it holds; AssertionError naming ``what`` (a string, or a
  function called then for the latest state) after ``within`` seconds. Returns the seconds it took.
- ``wait_until(condition, within, what)``: the same for synchronous code (Playwright's sync API, subprocesses
  driven from a thread); ``condition`` must then return a plain truth value.
- ``stop_process(process, grace)``: SIGTERM, SIGKILL after ``grace`` seconds, always reaped; also kills what it
  left behind (its children, and its process group when it leads one). Returns its piped stdout and stderr.

Everything is bounded; a condition is polled once more at the deadline, so a slow last poll still counts. The
benchmark (bench/) uses these too; nothing here imports ``bench``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress

import psutil

__all__ = ["eventually", "stop_process", "wait_until"]

What = str | Callable[[], str]


def _failure(what: What, within: float) -> AssertionError:
    text = what() if callable(what) else what
    return AssertionError(f"not within {within:g} s: {text}" if text else f"not true within {within:g} s")


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], within: float, what: What = "", every: float = 0.01
) -> float:
    """Poll ``condition`` until it holds, for at most ``within`` seconds; the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + within

    async def holds() -> bool:
        result = condition()
        if inspect.isawaitable(result):
            async with asyncio.timeout(max(deadline - loop.time(), 0.0) + every):
                result = await result
        return bool(result)

    while True:
        try:
            if await holds():
                return loop.time() - start
        except TimeoutError:
            raise _failure(what, within) from None
        if loop.time() >= deadline:
            raise _failure(what, within)
        await asyncio.sleep(min(every, max(deadline - loop.time(), 0.0)))


def wait_until(condition: Callable[[], bool], within: float, what: What = "", every: float = 0.05) -> float:
    """Poll ``condition`` until it holds, for at most ``within`` seconds (blocking); the seconds it took."""
    start = time.monotonic()
    deadline = start + within
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise _failure(what, within)
        time.sleep(min(every, max(deadline - time.monotonic(), 0.0)))


def stop_process(
    process: subprocess.Popen[bytes], grace: float = 10.0, also: Iterable[psutil.Process] = ()
) -> tuple[str, str]:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps it and kills its children (and ``also``).

    Returns what it wrote to its pipes (stdout, stderr), decoded; empty for output that was not a pipe."""
    leftovers = list(also)
    with suppress(psutil.Error):
        leftovers += psutil.Process(process.pid).children(recursive=True)
    leads_group = False
    with suppress(ProcessLookupError, PermissionError):
        leads_group = os.getpgid(process.pid) == process.pid
    out: tuple[bytes | None, bytes | None] = (None, None)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            out = process.communicate(timeout=grace)  # drains piped output so the process cannot block on it
        except subprocess.TimeoutExpired:
            process.kill()
            out = process.communicate(timeout=5.0)
    else:
        with suppress(subprocess.TimeoutExpired, ValueError):
            out = process.communicate(timeout=1.0)
    if leads_group:  # run.py's and the dashboard's children may sit in its process group
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    for child in leftovers:  # ... or in process groups of their own
        with suppress(psutil.Error):
            child.kill()
            child.wait(5.0)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    stdout, stderr = (part.decode(errors="replace") if part else "" for part in out)
    return stdout, stderr
