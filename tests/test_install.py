"""The project installs: ``pip install -r requirements.txt`` (the README's command, from the repository root) puts
``feed_server`` and ``dashboard`` on the import path of an environment outside the checkout, with the console
scripts ``marketdata-feed``, ``marketdata-dashboard`` and ``marketdata-client``.

The environment is a fresh virtual environment in a temporary directory. It sees the running interpreter's
site-packages through a ``.pth`` file, so the dependencies need not be downloaded again; unlike
``--system-site-packages``, a path in a ``.pth`` file does not have its own ``.pth`` files run, so an editable install
of this checkout into the running environment (``.ci/run`` makes one) does not leak into the new one: the test checks
that the project is not importable there before it installs it.
"""

from __future__ import annotations

import os
import re
import site
import subprocess
import venv
from pathlib import Path

from feed_server.launch import REPO_ROOT

TIMEOUT = 120.0  # each subprocess; pip builds the editable wheel in an isolated environment (setuptools from PyPI)


def clean_env() -> dict[str, str]:
    """The environment without anything that would put the checkout (or another environment) on the import path."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    return {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("PYTEST_")}


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def make_venv(root: Path) -> Path:
    """A virtual environment at ``root`` (with pip) that imports the running interpreter's packages; its bin dir."""
    venv.EnvBuilder(with_pip=True).create(root)
    bin_dir = root / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, clean_env())
    assert purelib.returncode == 0, purelib.stderr
    ours = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    Path(purelib.stdout.strip(), "running_env.pth").write_text("".join(f"{p}\n" for p in ours if Path(p).is_dir()))
    return bin_dir


def requirement_lines(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def test_pyproject_dependencies_are_requirements_txt() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.S | re.M)
    assert block is not None
    declared = re.findall(r'"([^"]+)"', block.group(1))
    assert declared == requirement_lines((REPO_ROOT / "requirements.txt").read_text())


def test_requirements_install_the_project_outside_the_checkout(tmp_path: Path) -> None:
    assert REPO_ROOT not in tmp_path.parents
    bin_dir = make_venv(tmp_path / "venv")
    python = str(bin_dir / "python")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env()
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])

    before = run([python, "-c", "import feed_server"], elsewhere, env)
    assert before.returncode != 0 and "No module named 'feed_server'" in before.stderr, before.stderr
    deps = run([python, "-c", "import grpc, nicegui, sortedcontainers"], elsewhere, env)
    assert deps.returncode == 0, deps.stderr

    # The README's command, from the repository root, as written (less the output).
    install = run([python, "-m", "pip", "install", "-q", "-r", "requirements.txt"], REPO_ROOT, env)
    assert install.returncode == 0, install.stdout + install.stderr

    imported = run(
        [python, "-c", "import feed_server.client, dashboard.main; print(feed_server.client.__file__)"], elsewhere, env
    )
    assert imported.returncode == 0, imported.stderr
    assert Path(imported.stdout.strip()).resolve() == REPO_ROOT / "feed_server" / "client" / "__init__.py"

    for script, usage in [
        ("marketdata-feed", "usage: python -m feed_server"),
        ("marketdata-dashboard", "usage: python -m dashboard"),
        ("marketdata-client", "usage: python -m feed_server.client"),
    ]:
        assert (bin_dir / script).is_file(), script
        helped = run([script, "--help"], elsewhere, env)
        assert helped.returncode == 0, f"{script}: {helped.stderr}"
        assert helped.stdout.startswith(usage), helped.stdout
    for module, usage in [("feed_server", "usage: python -m feed_server"), ("dashboard", "usage: python -m dashboard")]:
        helped = run([python, "-m", module, "--help"], elsewhere, env)
        assert helped.returncode == 0 and helped.stdout.startswith(usage), helped.stderr
    helped = run([python, "-m", "feed_server.client", "--help"], elsewhere, env)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m feed_server.client"), helped.stderr
    # Only the product's packages are installed, not the tests, the benchmark or the scripts.
    for other in ("tests", "bench", "scripts"):
        where = f"import importlib.util as u; s = u.find_spec({other!r}); print(s.origin if s else '')"
        found = run([python, "-c", where], elsewhere, env)
        assert found.returncode == 0, found.stderr
        assert str(REPO_ROOT) not in found.stdout, f"{other} is installed: {found.stdout}"


def test_without_a_compiler_it_installs_and_serves_verified_books_in_pure_python(tmp_path: Path) -> None:
    """``CC=false``: the compiled book cannot be built; the install warns and goes on, every process says it runs
    ``core: pure Python (...)``, and a feed and a client installed so serve and verify books."""
    source = tmp_path / "source"  # a copy of the checkout's files, so that the build leaves the checkout alone
    listed = run(["git", "ls-files", "-co", "--exclude-standard"], REPO_ROOT, clean_env())
    assert listed.returncode == 0, listed.stderr
    for name in listed.stdout.splitlines():
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO_ROOT / name).read_bytes())
    bin_dir = make_venv(tmp_path / "venv")
    python = str(bin_dir / "python")
    env = clean_env() | {"CC": "false", "CXX": "false"}
    env.pop("MARKETDATA_PURE_PYTHON", None)
    install = run([python, "-m", "pip", "install", "-q", "--no-deps", str(source)], tmp_path, env)
    assert install.returncode == 0, install.stdout + install.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = """
import asyncio
from feed_server.client import connect
from feed_server.protocol import core
from feed_server.server.feed import Feed, FeedOptions

async def main():
    feed = Feed(FeedOptions(host="127.0.0.1", port=0, seed=3, rate=200.0))
    port = await feed.start()
    try:
        async with connect(f"127.0.0.1:{port}", instruments=["AAPL", "BTC-USD"], timeout=20.0) as client:
            await client.wait_live(timeout=20.0)
            async for update in client.updates():
                if update.sequence > 50:
                    break
            print(core.__file__)
            print(core.describe())
            print(client.book("AAPL").live, client.book("BTC-USD").live)
    finally:
        await feed.stop(grace=0.1)

asyncio.run(main())
"""
    ran = run([python, "-c", script], elsewhere, clean_env())
    assert ran.returncode == 0, ran.stdout + ran.stderr
    where, described, live = ran.stdout.splitlines()[-3:]
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    assert described.startswith("pure Python (the compiled book is not built: "), described
    assert live == "True True"
