"""The benchmark suite: ``python -m bench [--quick] [--json PATH]``.

Each row lives in its own module (``book_apply``, ``feed_stream``, ``latency``, ``fanout``, ``tabs``,
``startup``, ``idle``) and returns :class:`bench.report.Result` lines; ``report`` prints the one table and
``procs`` starts and always stops the real processes (feed server, dashboard, ``run.py``, bench clients)
on 127.0.0.1 with free ports.
"""
