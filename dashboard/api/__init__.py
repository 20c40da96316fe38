"""The dashboard's raw JSON API for scripts, beside the pages on the same app.

``routes`` (the WebSocket and REST routes), ``params`` (query parameter parsing), ``fanout`` (books and trades
to WebSocket clients, conflated per client, with the slow-client watchdog), ``book_json`` (the JSON
encoding, cached per book version), ``transport`` (the uvicorn transport tweak: send buffer cap and abort).
"""
