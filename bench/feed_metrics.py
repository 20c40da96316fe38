"""The feed's Prometheus metrics (``python -m feed_server --metrics-port``) as the bench reads them.

:func:`scrape` reads ``/metrics`` once. A :class:`FeedWatch` covers one measurement window: it scrapes when the
window opens, polls the engine's lag every ``POLL_S`` in a thread, and scrapes again when it closes, giving a
:class:`FeedWindow`: the feed's largest lag behind the wall clock, how far it fell behind (the growth of
``marketdata_engine_behind_seconds_total``: it only grows once the engine is more than 0.25 s late, and then the
event times it stamps stop showing the lag), and any counter's growth. :func:`mark` puts the lag on a row's
label and flags a row whose feed fell behind: such a row does not pass, whatever its figure.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from bench.procs import Proc
from bench.report import Result
from tests.waiting import wait_until

__all__ = [
    "BEHIND",
    "EVENTS",
    "FEED_BEHIND",
    "LAG",
    "POLL_S",
    "RESYNCS",
    "SUBSCRIBERS",
    "FeedWatch",
    "FeedWindow",
    "mark",
    "scrape",
    "wait_for_subscribers",
]

LAG = "marketdata_engine_lag_seconds"
BEHIND = "marketdata_engine_behind_seconds_total"
EVENTS = "marketdata_events_total"
SUBSCRIBERS = "marketdata_subscribers"
RESYNCS = "marketdata_subscriber_resyncs_total"
POLL_S = 0.2
FEED_BEHIND = "feed behind"


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """Every metric at ``url``, samples of one name summed over their labels (events over instruments)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def wait_for_subscribers(url: str, count: int, timeout: float, procs: Sequence[Proc] = ()) -> None:
    """Wait until the feed has at least ``count`` subscribers (while ``procs`` stay alive)."""

    def subscribed() -> bool:
        for proc in procs:
            proc.check_alive()
        return scrape(url)[SUBSCRIBERS] >= count

    wait_until(subscribed, timeout, f"the feed did not have {count} subscriber(s)")


@dataclass(frozen=True, slots=True)
class FeedWindow:
    """What the feed's metrics said over one window."""

    seconds: float
    max_lag_s: float
    polls: int
    first: dict[str, float]
    last: dict[str, float]

    def delta(self, name: str) -> float:
        return self.last[name] - self.first[name]

    @property
    def behind_s(self) -> float:
        return self.delta(BEHIND)

    @property
    def behind(self) -> bool:
        return self.behind_s > 0

    def text(self) -> str:
        """``feed lag max 3.2 ms`` (and ``, fell behind 1.40 s`` when it did)."""
        out = f"feed lag max {self.max_lag_s * 1e3:.1f} ms"
        return out + (f", fell behind {self.behind_s:.2f} s" if self.behind else "")


class FeedWatch:
    """Watch the feed's metrics at ``url`` from :meth:`start` to :meth:`stop` (see the module docstring)."""

    def __init__(self, url: str, poll_s: float = POLL_S) -> None:
        self.url = url
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first: dict[str, float] = {}
        self._max_lag = 0.0
        self._polls = 0
        self._error: BaseException | None = None
        self._started = 0.0
        self._window: FeedWindow | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._window is None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._first = scrape(self.url)
        self._started = time.monotonic()
        self._max_lag = self._first[LAG]
        self._thread = threading.Thread(target=self._poll, name="feed-lag-watch", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        try:
            while not self._stop.wait(self.poll_s):
                self._max_lag = max(self._max_lag, scrape(self.url)[LAG])
                self._polls += 1
        except BaseException as exc:  # reported by stop(), in the caller's thread
            self._error = exc

    def stop(self) -> FeedWindow:
        """End the window (once; later calls return the same window)."""
        if self._window is not None:
            return self._window
        if self._thread is None:
            raise RuntimeError("not started")
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"scraping the feed's metrics failed: {self._error}") from self._error
        last = scrape(self.url)
        self._window = FeedWindow(
            seconds=time.monotonic() - self._started,
            max_lag_s=max(self._max_lag, last[LAG]),
            polls=self._polls + 2,
            first=self._first,
            last=last,
        )
        return self._window


def mark(results: Sequence[Result], window: FeedWindow) -> list[Result]:
    """The rows measured over ``window`` with the feed's lag on their label, flagged when the feed fell behind."""
    for result in results:
        result.label = f"{result.label}; {window.text()}"
        if window.behind:
            result.flag = FEED_BEHIND
    return list(results)
