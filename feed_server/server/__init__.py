"""The feed's server side: a source -> engine (pacing) -> fan-out -> gRPC service (and the NATS publisher).

Sources: ``sources`` (the EventSource contract and the simulated market), ``simulator`` (order-level simulation),
``replay`` (a recording played back), ``exchanges`` (live Binance, Kraken and Coinbase order books). Then
``engine`` (plays a source against the wall clock), ``depth_view`` (what a depth-limited subscriber sees), ``fanout``
(the messages of the sources' events, built once per depth, and their delivery; resync snapshots), ``registry``
(who subscribes at which depth), ``feed_state`` (the session, the sequences, the sources' state), ``subscription``
(a subscriber's bounded buffer),
``feed_core`` (requests and answers for every transport: validation, snapshots, the instrument list),
``service`` (the MarketData servicer, a gRPC adapter over the core), ``feed`` (the feed composed: the grpc.aio
server and health service), ``nats_publisher`` (the feed on NATS, a NATS
adapter over the core), ``metrics``, ``faults`` (fault injection for testing consumers), ``cli`` (``python -m
feed_server``).
"""
