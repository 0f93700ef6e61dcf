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

FLUSH_TIMEOUT_S = 30.0  # a finished file source waits this long for the broker's acknowledgements
STOP_FLUSH_S = 5.0  # a stop signal waits at most this long (systemd's stop timeout is longer)
PAUSED_KEY = "paused"


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
        state: durable state (the pause switch).
    """

    def __init__(self, settings: Settings, analyzer: Analyzer, publisher: Publisher, state: StateStore):
        self.settings = settings
        self.analyzer = analyzer
        self.publisher = publisher
        self.state = state
        self.stop_event = threading.Event()
        self.paused = threading.Event()  # the pause switch: source released, nothing analysed
        if state.get(PAUSED_KEY) == "1":
            self.paused.set()
        publisher.on_pause = self.set_paused
        self.windows = 0
        self._state = "starting"
        self._fps = 0.0
        self._inference_ms: list[float] = []

    def status(self) -> Status:
        """The current health message."""
        mean_ms = sum(self._inference_ms) / len(self._inference_ms) if self._inference_ms else 0.0
        return Status(
            state=self._state,
            paused=self.paused.is_set(),
            accelerator=self.analyzer.accelerator,
            fps=round(self._fps, 2),
            inference_ms=round(mean_ms, 1),
            outbox_depth=self.publisher.depth,
            dropped=self.publisher.dropped,
            version=__version__,
            timestamp=utc_iso(datetime.now(timezone.utc)),
        )

    def _set_state(self, state: str) -> None:
        self._state = state
        self.publisher.publish_status(self.status())

    def set_paused(self, on: bool) -> None:
        """The pause switch (``<prefix>/paused/set``): persisted at once; the run loop releases
        the source before the next frame and drops the open window unpublished."""
        if on != self.paused.is_set():
            self.state.set(PAUSED_KEY, "1" if on else "0")
            (self.paused.set if on else self.paused.clear)()
            log.info("pause switch %s", "ON: releasing the source" if on else "OFF: resuming")
            self._state = "paused" if on else "running"
        self.publisher.publish_paused(on)
        self.publisher.publish_status(self.status())

    def _emit(self, summary: WindowSummary, clock: Clock) -> None:
        start, end = clock.wall(summary.start), clock.wall(summary.end)
        self.publisher.submit(lambda seq: engagement(self.settings.device_id, seq, summary, start, end))
        self.windows += 1
        self._fps = summary.frames_analyzed / max(summary.end - summary.start, 1e-6)
        self.publisher.publish_status(self.status())
        self._inference_ms.clear()

    def _analyse(self, live: bool, looped: bool) -> bool:
        """Open the source and analyse it until it ends (True) or a stop or pause is asked (False).

        The source is closed (camera released) before this returns.
        """
        clock = Clock(live)
        aggregator = WindowAggregator(self.settings.window_s, self.settings.min_group_size)
        source = open_source(self.settings.source, looped)
        last, step, ended = None, 0.0, False
        try:
            for frame in throttle(source, self.settings.fps):
                if self.stop_event.is_set() or self.paused.is_set():
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
            else:
                ended = True
        finally:
            source.close()
        if self.paused.is_set() and not self.stop_event.is_set():
            aggregator.reset()
            log.info("paused: source released, open window dropped")
            return False
        end = None if last is None or live else last + step
        for summary in aggregator.flush(end):
            self._emit(summary, clock)
        return ended

    def run(self) -> int:
        """Analyse the source until it ends or a stop is requested. Returns the exit code."""
        live = describe(self.settings.source) != "file"
        looped = not live and self.settings.source_loop
        self.publisher.start()
        self.publisher.publish_paused(self.paused.is_set())
        if self.paused.is_set():
            log.info("pause switch is ON (kept from an earlier run): the source stays closed")
        self._set_state("starting")
        ended = False
        while not ended and not self.stop_event.is_set():
            if self.paused.is_set():
                self._set_state("paused")
                while self.paused.is_set() and not self.stop_event.wait(0.1):
                    pass
                continue
            ended = self._analyse(live, looped)
        finished = ended and not live
        self._set_state("finished" if finished else "stopped")
        left = self.publisher.close(FLUSH_TIMEOUT_S if finished else STOP_FLUSH_S)
        log.info("%d window(s) published, %d unacknowledged", self.windows, left)
        return 0

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT end the run cleanly (flush, ``offline``)."""

        def _stop(signum, _frame):
            log.info("signal %d: stopping", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
