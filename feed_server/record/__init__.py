"""Recordings of a feed: the file format (format.py), the recorder, ``--info`` and ``--export``
(``python -m feed_server.record``)."""
