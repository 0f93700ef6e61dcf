"""``roompulse run``: source -> analyzer -> window aggregator -> publisher.

The imperative shell: it owns the clock, the source, the state store and the publisher,
and passes frames through the pure stages. Frames are dropped as soon as they are analysed.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from device import __version__
from device.aggregator import WindowAggregator, WindowSummary
from device.config import Settings
from device.payloads import Status, engagement, utc_iso
from device.pipeline import Analyzer
from device.publisher import Publisher
from device.source import describe, open_source
from device.state import StateStore
from device.types import Frame

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0


def throttle(frames: Iterator[Frame], fps: float) -> Iterator[Frame]:
    """Pass at most ``fps`` frames per second of the source's timeline, dropping the rest."""
    period = 1.0 / fps
    due = None
    for frame in frames:
        stamp = frame.timestamp
        if due is None or stamp >= due - 1e-6:
            # Keep the average rate; after a gap, restart the schedule from this frame.
            due = stamp + period if due is None or stamp >= due + period else due + period
            yield frame


class Clock:
    """Maps source timestamps to wall-clock times for payloads.

    Live sources are stamped with ``time.monotonic()``: wall time is ``now - (mono_now - t)``.
    Files are stamped from 0: their timeline is laid from the moment the run started.
    """

    def __init__(self, live: bool):
        self.live = live
        self.started = datetime.now(timezone.utc)
        self.origin: float | None = None

    def wall(self, stamp: float) -> datetime:
        if self.live:
            return datetime.now(timezone.utc) - timedelta(seconds=time.monotonic() - stamp)
        if self.origin is None:
            self.origin = stamp
        return self.started + timedelta(seconds=stamp - self.origin)


class Service:
    """One running appliance.

    Args:
        settings: the validated configuration.
        analyzer: detector + orientation, already loaded.
        publisher: the MQTT/stdout publisher (not yet started).
        state: durable state (``seq``).
    """

    def __init__(self, settings: Settings, analyzer: Analyzer, publisher: Publisher, state: StateStore):
        self.settings = settings
        self.analyzer = analyzer
        self.publisher = publisher
        self.state = state
        self.stop_event = threading.Event()
        self.windows = 0
        self._state = "starting"
        self._fps = 0.0
        self._inference_ms: list[float] = []

    def status(self) -> Status:
        """The current health message."""
        mean_ms = sum(self._inference_ms) / len(self._inference_ms) if self._inference_ms else 0.0
        return Status(
            state=self._state,
            accelerator=self.analyzer.accelerator,
            fps=round(self._fps, 2),
            inference_ms=round(mean_ms, 1),
            queue_depth=self.publisher.queue_depth,
            version=__version__,
            timestamp=utc_iso(datetime.now(timezone.utc)),
        )

    def _set_state(self, state: str) -> None:
        self._state = state
        self.publisher.publish_status(self.status())

    def _emit(self, summary: WindowSummary, clock: Clock) -> None:
        payload = engagement(
            self.settings.device_id, self.state.next_seq(), summary, clock.wall(summary.start), clock.wall(summary.end)
        )
        self.publisher.publish_engagement(payload)
        self.windows += 1
        self._fps = summary.frames_analyzed / max(summary.end - summary.start, 1e-6)
        self.publisher.publish_status(self.status())
        self._inference_ms.clear()

    def run(self) -> int:
        """Analyse the source until it ends or a stop is requested. Returns the exit code."""
        live = describe(self.settings.source) != "file"
        looped = not live and self.settings.source_loop
        clock = Clock(live)
        aggregator = WindowAggregator(self.settings.window_s, self.settings.min_group_size)
        self.publisher.start()
        self._set_state("starting")
        last, step = None, 0.0
        for frame in throttle(open_source(self.settings.source, looped), self.settings.fps):
            if self.stop_event.is_set():
                break
            result = self.analyzer.result(frame)
            self._inference_ms.append(self.analyzer.last_inference_ms)
            if self._state == "starting":
                self._set_state("running")
            for summary in aggregator.add(result):
                self._emit(summary, clock)
            if last is not None:
                step = frame.timestamp - last
            last = frame.timestamp
        end = None if last is None or live else last + step
        for summary in aggregator.flush(end):
            self._emit(summary, clock)
        self._set_state("finished" if not live and not self.stop_event.is_set() else "stopped")
        left = self.publisher.close(FLUSH_TIMEOUT_S)
        log.info("%d window(s) published, %d unacknowledged", self.windows, left)
        return 0

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT end the run cleanly (flush, ``offline``)."""

        def _stop(signum, _frame):
            log.info("signal %d: stopping", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
