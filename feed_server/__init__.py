"""The market data feed: wire contract stubs, the shared order book model, the simulating gRPC server,
the subscriber library and the CLI client."""
