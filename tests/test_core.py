"""Which book core runs (feed_server.protocol.core): compiled where it was built, from the source in this checkout,
unless ``MARKETDATA_PURE_PYTHON=1``; every process says which in its start-up log and on ``/metrics``.

On a machine with a C++ compiler (CI's) the compiled book must be built and current: a build older than its source
fails here, not in a user's hands (the product would quietly fall back to the slower path and say so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from feed_server.protocol import book, core
from feed_server.protocol.core import PURE_PYTHON_ENV
from tests.server.test_metrics import scrape
from tests.servers import REPO_ROOT, child_env, free_port, start_feed_process, wait_for_health

FORCED = os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")


def has_compiler() -> bool:
    """Whether this machine can build the extension (the compiler Python's build would use is present)."""
    compiler = (sysconfig.get_config_var("CXX") or "g++").split()[0]
    return shutil.which(compiler) is not None


needs_compiler = pytest.mark.skipif(not has_compiler(), reason="no C++ compiler: the pure path is the only one")


@needs_compiler
def test_the_compiled_book_is_built_from_the_source_in_this_checkout() -> None:
    try:
        from feed_server.protocol import compiled_book
    except ImportError as exc:
        pytest.fail(f"the compiled book is not built ({exc}): run pip install -r requirements.txt")
    assert compiled_book.SOURCE_SHA256 == core.source_sha256(), (
        "the compiled book is older than feed_server/protocol/compiled_book.pyx: run pip install -r requirements.txt"
    )


def test_this_process_runs_the_core_its_environment_asks_for() -> None:
    if FORCED:
        assert core.CORE == "python" and core.OrderBook is book.OrderBook
        assert core.describe() == f"pure Python ({PURE_PYTHON_ENV}={os.environ[PURE_PYTHON_ENV]})"
    elif has_compiler():
        assert core.CORE == "compiled" and core.describe() == "compiled", core.describe()
        assert core.OrderBook is not book.OrderBook
    else:
        assert core.CORE == "python" and core.describe().startswith("pure Python (the compiled book is not built")


def test_a_build_older_than_its_source_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source in the checkout changed since the build (an edit, a pull): the pure path runs, and says why."""
    pytest.importorskip("feed_server.protocol.compiled_book")
    edited = tmp_path / "compiled_book.pyx"
    edited.write_bytes(Path(core.__file__).with_name("compiled_book.pyx").read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(core, "_SOURCE", edited)
    monkeypatch.delenv(PURE_PYTHON_ENV, raising=False)
    chosen, reason = core._choose()
    assert chosen is book.OrderBook
    assert reason == "the compiled book is older than its source: run pip install -r requirements.txt"


def describe_in_a_new_process(value: str | None) -> str:
    env = child_env()
    env.pop(PURE_PYTHON_ENV, None)
    if value is not None:
        env[PURE_PYTHON_ENV] = value
    done = subprocess.run(
        [sys.executable, "-c", "from feed_server.protocol import core; print(core.CORE, core.describe())"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30, check=True,
    )
    return done.stdout.strip()


def test_the_variable_forces_the_pure_path_and_only_1_does() -> None:
    assert describe_in_a_new_process("1") == f"python pure Python ({PURE_PYTHON_ENV}=1)"
    unforced = "compiled compiled" if has_compiler() else describe_in_a_new_process(None)
    assert describe_in_a_new_process("0") == unforced
    assert describe_in_a_new_process(None) == unforced


@pytest.mark.parametrize("forced", [True, False])
def test_a_feed_process_names_its_core_in_its_log_and_on_metrics(forced: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if forced:
        monkeypatch.setenv(PURE_PYTHON_ENV, "1")
    else:
        monkeypatch.delenv(PURE_PYTHON_ENV, raising=False)
    expected = "python" if forced or not has_compiler() else "compiled"
    port, metrics_port = free_port(), free_port()
    process = start_feed_process(port, "--rate", "20", "--metrics-port", str(metrics_port))
    try:
        wait_for_health(f"127.0.0.1:{port}", timeout=15)
        samples = scrape(metrics_port)
        assert samples[("marketdata_core_info", (("core", expected),))] == 1
        assert [key for key in samples if key[0] == "marketdata_core_info"] == [
            ("marketdata_core_info", (("core", expected),))
        ]
    finally:
        process.terminate()
        _, err = process.communicate(timeout=15)
    lines = [line for line in err.decode().splitlines() if "core: " in line]
    assert len(lines) == 1, err.decode()
    if forced:
        assert lines[0].endswith(f"core: pure Python ({PURE_PYTHON_ENV}=1)"), lines
    elif expected == "compiled":
        assert lines[0].endswith("core: compiled"), lines
