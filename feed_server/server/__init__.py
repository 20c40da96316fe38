"""The feed's server side: simulator (the source) -> engine (pacing) -> fan-out -> gRPC service.

``simulator`` (order-level simulation), ``depth_view`` (what a depth-limited subscriber sees), ``engine`` (plays
the simulators against the wall clock), ``fanout`` (subscriptions, bounded buffers, resync snapshots),
``service`` (the MarketData servicer), ``grpc_server`` (the grpc.aio server and health service), ``faults``
(fault injection for testing consumers), ``cli`` (``python -m feed_server``).
"""
