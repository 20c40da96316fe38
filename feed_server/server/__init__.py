"""The feed's server side: a source -> engine (pacing) -> fan-out -> gRPC service (and the NATS publisher).

Sources: ``sources`` (the EventSource contract and the simulated market), ``simulator`` (order-level simulation),
``replay`` (a recording played back), ``exchanges`` (live Binance, Kraken and Coinbase order books). Then
``engine`` (plays a source against the wall clock), ``depth_view`` (what a depth-limited subscriber sees), ``fanout``
(subscriptions, bounded buffers, resync snapshots, the source's state on every message), ``subscription``,
``service`` (the MarketData servicer), ``grpc_server`` (the grpc.aio server and health service),
``nats_publisher`` (the feed on NATS), ``metrics``, ``faults`` (fault injection for testing consumers), ``cli``
(``python -m feed_server``).
"""
