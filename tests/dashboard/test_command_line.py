"""``python -m dashboard`` refuses bad settings before it serves: one line on stderr, exit code 1, no traceback.

Each case runs the real command as a process (no feed is needed: it must stop before it would connect).
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.servers import REPO_ROOT, child_env, free_port
from tests.waiting import stop_process

PROG = "python -m dashboard: error: "


def run_dashboard(port: int, env: dict[str, str] | None = None, within: float = 30.0) -> tuple[int, str, str]:
    """Run ``python -m dashboard`` on 127.0.0.1:``port``; return its exit code, stdout and stderr.

    Fails if it is still running after ``within`` seconds (it would be serving instead of refusing)."""
    child = child_env()
    for name in [name for name in child if name.startswith("DASHBOARD_")]:
        del child[name]
    child.update(env or {})
    feed = f"127.0.0.1:{free_port()}"  # nothing listens there: the dashboard must not get as far as the feed
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--feed-address", feed, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=child,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            out, err = process.communicate(timeout=within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"python -m dashboard still running after {within} s") from None
        return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    finally:
        stop_process(process)


def assert_one_error_line(code: int, out: str, err: str, *fragments: str) -> str:
    assert code == 1, (code, out, err)
    assert out == "", out
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    line = lines[0]
    assert line.startswith(PROG), line
    assert "Traceback" not in err and " ERROR " not in err
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DASHBOARD_SEND_TIMEOUT", "0"),
        ("DASHBOARD_SEND_TIMEOUT", "-1"),
        ("DASHBOARD_SEND_TIMEOUT", "soon"),
        ("DASHBOARD_SEND_TIMEOUT", "nan"),
        ("DASHBOARD_SEND_TIMEOUT", ""),
        ("DASHBOARD_MAX_CONNECTIONS", "0"),
        ("DASHBOARD_MAX_CONNECTIONS", "2.5"),
        ("DASHBOARD_TRADE_BUFFER", "abc"),
        ("DASHBOARD_TRADE_BUFFER", "-3"),
    ],
)
def test_a_bad_limit_is_one_error_line_and_exit_1(name: str, value: str) -> None:
    code, out, err = run_dashboard(free_port(), {name: value})
    assert_one_error_line(code, out, err, name, repr(value))


@pytest.mark.parametrize("listening", [True, False], ids=["listening", "bound"])
def test_a_busy_port_is_one_error_line_and_exit_1(listening: bool) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        if listening:
            taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_dashboard(port)
    line = assert_one_error_line(code, out, err, f"127.0.0.1:{port}")
    assert "in use" in line.lower(), line
