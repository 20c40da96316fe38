"""The market data feed, in three layers that data flows through one way:

- ``feed_server.protocol``: the pure, I/O-free core every side shares: the order book, the checksum, wire
  conversion, instrument specs, the exception tree, and the generated stubs (``protocol.pb``).
- ``feed_server.server``: the feed: the simulator (the source), depth views, the pacing engine, the fan-out,
  the gRPC service and the process around it, fault injection. ``python -m feed_server`` runs it.
- ``feed_server.client``: the consumer library (per-instrument sync state machine, the reconnecting
  subscriber, gRPC error translation, the health probe) and the CLI, ``python -m feed_server.client``.

Beside them, for the entry points: ``cli_args`` (argument checks: one error line, exit 1) and ``launch`` (starting
processes and telling when they are ready, for ``run.py``). The client side never imports the server side; both
import the protocol core.
"""
