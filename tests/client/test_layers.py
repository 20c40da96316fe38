"""The client side's layering, read from its imports: the core imports no transport, only the gRPC transport
imports grpc and only the NATS one nats, and nothing on the client side imports the server side."""

from __future__ import annotations

import ast
from pathlib import Path

from feed_server.launch import REPO_ROOT

CLIENT = REPO_ROOT / "feed_server" / "client"
GRPC_TRANSPORT = {"grpc_transport.py", "rpc.py", "health.py"}
NATS_TRANSPORT = {"nats_transport.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_transports_import_their_protocol_and_nothing_imports_the_server() -> None:
    modules = sorted(CLIENT.glob("*.py"))
    assert len(modules) > 10
    for path in modules:
        imported = _imports(path)
        tops = {name.split(".")[0] for name in imported}
        if path.name not in GRPC_TRANSPORT:
            assert "grpc" not in tops and "grpc_health" not in tops, path.name
        if path.name not in NATS_TRANSPORT:
            assert "nats" not in tops, path.name
            assert not any(name.startswith("feed_server.bus.connection") for name in imported), path.name
        assert not any(name.startswith("feed_server.server") for name in imported), path.name
    core = _imports(CLIENT / "keeper.py")
    assert not any(name.endswith(("grpc_transport", "nats_transport", ".rpc")) for name in core), core


def test_the_protocol_core_imports_no_transport() -> None:
    for path in sorted((REPO_ROOT / "feed_server" / "protocol").glob("*.py")):  # (pb/, the generated stubs, aside)
        tops = {name.split(".")[0] for name in _imports(path)}
        assert not tops & {"grpc", "nats", "asyncio"}, path.name
