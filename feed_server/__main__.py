"""``python -m feed_server``: the feed server (see feed_server/server/cli.py)."""

import sys

from feed_server.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
