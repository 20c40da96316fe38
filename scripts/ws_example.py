"""Follow one book over the dashboard's JSON WebSocket and verify every checksum (the README's example).

    python scripts/ws_example.py [--base 127.0.0.1:8000] [--instrument BTC-USD] [--count 20]
"""

import argparse
import asyncio
import json
import urllib.request
import zlib
from typing import Any

import websockets


def checksum(bids: list[list[float]], asks: list[list[float]], tick: float, lot: float) -> int:
    """The feed's checksum of a JSON book: CRC32 of "<bids>|<asks>", top 10, as price_ticks:size_lots."""

    def side(levels: list[list[float]]) -> str:
        return ",".join(f"{round(price / tick)}:{round(size / lot)}" for price, size in levels[:10])

    return zlib.crc32(f"{side(bids)}|{side(asks)}".encode())


async def follow(base: str, spec: dict[str, Any], count: int) -> int:
    """Print `count` live books; return how many failed their checksum."""
    url = f"ws://{base}/ws/market_data/{spec['instrument_id']}?depth=10&trades=0"
    bad = 0
    async with websockets.connect(url) as ws:
        seen = 0
        while seen < count:
            msg = json.loads(await ws.recv())
            if msg["type"] != "book" or msg["stale"]:
                continue
            seen += 1
            ok = checksum(msg["bids"], msg["asks"], spec["tick_size"], spec["lot_size"]) == msg["checksum"]
            bad += not ok
            print(msg["sequence"], msg["bids"][0], msg["asks"][0], "checksum ok" if ok else "CHECKSUM MISMATCH")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description="Follow one book over the dashboard's JSON WebSocket.")
    parser.add_argument("--base", default="127.0.0.1:8000", help="the dashboard's HOST:PORT")
    parser.add_argument("--instrument", default="BTC-USD")
    parser.add_argument("--count", type=int, default=20, help="books to print")
    args = parser.parse_args()
    with urllib.request.urlopen(f"http://{args.base}/api/instruments", timeout=5) as response:
        instruments = json.load(response)
    spec = next(i for i in instruments if i["instrument_id"] == args.instrument)
    return 1 if asyncio.run(follow(args.base, spec, args.count)) else 0


if __name__ == "__main__":
    raise SystemExit(main())
