"""The committed stubs in feed_server/protocol/pb must be exactly what scripts/gen_protos.py generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("market_data_pb2.py", "market_data_pb2.pyi", "market_data_pb2_grpc.py")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name in GENERATED:
        fresh = (tmp_path / "feed_server" / "protocol" / "pb" / name).read_text()
        committed = (ROOT / "feed_server" / "protocol" / "pb" / name).read_text()
        assert fresh == committed, f"feed_server/protocol/pb/{name} is stale: run python scripts/gen_protos.py"


def test_stubs_import_from_the_package() -> None:
    from feed_server.protocol.pb import market_data_pb2, market_data_pb2_grpc

    assert market_data_pb2.DESCRIPTOR.package == "marketdata.v1"
    assert hasattr(market_data_pb2_grpc, "MarketDataStub")
