"""Live exchange sources (``python -m feed_server --source binance|kraken|coinbase``): each adapter turns one
exchange's public order-book feed, checked by the exchange's own rules, into the product's contract (see
``adapter``)."""
