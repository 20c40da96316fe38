"""Regenerate the gRPC stubs in feed_server/protocol/pb from proto/market_data.proto.

Usage: python scripts/gen_protos.py [--out DIR]

The stubs import as ``from feed_server.protocol.pb import market_data_pb2``: protoc's
``-I feed_server/protocol/pb=proto`` mapping places them in the package. ``--out`` writes the tree somewhere
else (the staleness test uses it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO_FILES = ("market_data.proto",)
PACKAGE_PATH = "feed_server/protocol/pb"


def generate(out_dir: Path) -> None:
    """Write market_data_pb2.py, .pyi and _pb2_grpc.py under out_dir/feed_server/protocol/pb."""
    (out_dir / PACKAGE_PATH).mkdir(parents=True, exist_ok=True)
    include = protoc._get_resource_file_name("grpc_tools", "_proto")  # type: ignore[attr-defined]
    for name in PROTO_FILES:
        args = [
            "grpc_tools.protoc",
            f"-I{PACKAGE_PATH}={PROTO_DIR}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"{PACKAGE_PATH}/{name}",
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="root of the output tree (default: the repo)")
    args = parser.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
