"""``python -m feed_server.record``: record a feed, describe or export a recording (see feed_server/record/cli.py)."""

import sys

from feed_server.record.cli import main

if __name__ == "__main__":
    sys.exit(main())
