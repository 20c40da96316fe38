"""The NATS backbone: subject names and headers (``subjects``, pure) and the NATS connection the feed and the
consumers share (``connection``)."""
