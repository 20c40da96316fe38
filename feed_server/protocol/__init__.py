"""The protocol core shared by the feed, its consumers and the dashboard: pure and I/O-free.

``book`` (the price-level order book), ``checksum`` (the one checksum mechanism), ``wire`` (protobuf to model
and back), ``instruments`` (instrument specs), ``units`` (ticks and lots as exact text and JSON numbers, the mid,
the spread, a trade's side), ``errors`` (the one exception tree), ``pb`` (generated stubs).
"""
