"""``python -m feed_server.client``: the command-line client (see feed_server/client/cli.py)."""

import sys

from feed_server.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
