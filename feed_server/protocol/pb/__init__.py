"""Generated gRPC stubs for proto/market_data.proto. Do not edit: run ``python scripts/gen_protos.py``."""
