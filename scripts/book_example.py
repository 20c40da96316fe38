"""A script written only against the public client API: the README's "Scripts in Python" example.

    python scripts/book_example.py [ADDRESS] [INSTRUMENT] [COUNT]

``ADDRESS`` is ``HOST:PORT`` (default 127.0.0.1:50051) or ``nats://HOST:PORT``; it prints the instrument's
best bid and ask once live, then one line per verified update (COUNT of them, default 10) with its trades.
"""

import asyncio
import sys

from feed_server.client import FeedError, connect


async def main(address: str, instrument: str, count: int) -> None:
    async with connect(address, instruments=[instrument], depth=10) as feed:
        await feed.wait_live(timeout=10.0)
        book = feed.book(instrument)
        print(f"{instrument}: bid {book.best_bid} ask {book.best_ask} mid {book.mid} at sequence {book.sequence}")
        seen = 0
        async for update in feed.updates():
            best = update.book.bids[:1], update.book.asks[:1]
            state = "live" if update.book.live else f"stale ({update.book.reason})"
            traded = ", ".join(f"{t.side} {t.size} @ {t.price}" for t in update.trades)
            print(f"seq {update.sequence} {state} best {best} {traded}")
            seen += 1
            if seen >= count:
                break


if __name__ == "__main__":
    args = sys.argv[1:]
    try:
        asyncio.run(
            main(
                args[0] if args else "127.0.0.1:50051",
                args[1] if len(args) > 1 else "BTC-USD",
                int(args[2]) if len(args) > 2 else 10,
            )
        )
    except FeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
