"""``roompulse run``: source -> analyzer -> window aggregator -> publisher.

The imperative shell: it owns the clocks, the capture, the state store, the publisher and
the systemd notifications, and passes frames through the pure stages. Frames are dropped
as soon as they are analysed.

One loop iteration (at least every ``POLL_S``):

1. take the newest frame from the capture worker (:mod:`device.supervisor`), if any;
2. let the capture supervise itself (stall -> ``camera_stalled``, re-open with backoff);
3. analyse the frame, feed the window aggregator, publish closed windows;
4. ping the systemd watchdog when the capture is healthy (:mod:`device.systemd_notify`).

The pause switch (``<prefix>/paused/set``) ends the capture (the camera is released) and
drops the open window; while paused the loop only waits, still pinging the watchdog.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable

from device import __version__
from device.aggregator import WindowAggregator, WindowSummary
from device.clock import WallClock, clock_synchronized
from device.config import Settings
from device.payloads import Status, engagement, utc_iso
from device.pipeline import Analyzer
from device.publisher import Publisher
from device.sources import describe, make_source
from device.state import StateError, StateStore
from device.supervisor import Capture
from device.systemd_notify import Notifier, Watchdog
from device.trouble import Trouble, TroubleLog, broker_line, camera_line
from device.types import Frame

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0  # a finished file source waits this long for the broker's acknowledgements
STOP_FLUSH_S = 5.0  # a stop signal waits at most this long (systemd's stop timeout is longer)
PAUSED_KEY = "paused"
PAUSE_WRITE_S = 1.0  # the pause switch is written (and its changes logged) at most once a second
POLL_S = 0.25  # longest wait for a frame before the loop supervises and pings anyway


class Service:
    """One running appliance.

    Args:
        settings: the validated configuration.
        analyzer: detector + orientation, already loaded.
        publisher: the MQTT/stdout publisher (not yet started).
        state: durable state (the pause switch).
        notifier: systemd notifications (default: from ``$NOTIFY_SOCKET``).
        wall: wall clock for payload timestamps, seconds since the epoch (``time.time``).
        mono: monotonic clock for supervision, seconds (``time.monotonic``; live frames are
            stamped with it too, so only replace it together with the source).
        capture_factory: builds the :class:`Capture` (tests pass their own sources).
    """

    def __init__(self, settings: Settings, analyzer: Analyzer, publisher: Publisher, state: StateStore,
                 notifier: Notifier | None = None, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic,
                 capture_factory: Callable[[Settings], Capture] | None = None):
        self.settings = settings
        self.analyzer = analyzer
        self.publisher = publisher
        self.state = state
        self.notifier = notifier or Notifier()
        self.watchdog = Watchdog(self.notifier)
        self.wall = wall
        self.mono = mono
        self.capture_factory = capture_factory or default_capture
        self.stop_event = threading.Event()
        self.paused = threading.Event()  # the pause switch: source released, nothing analysed
        self._pause_lock = threading.Lock()
        self._pause_dirty = False  # changed since it was last written to the state file
        self._pause_changes = 0  # changes not logged yet
        self._pause_logged = self._pause_written = float("-inf")
        if state.get(PAUSED_KEY) == "1":
            self.paused.set()
        publisher.on_pause = self.set_paused
        self.windows = 0
        self._file_position: float | None = None  # a file read once: stamp of the last frame analysed
        self._state = "starting"
        self._notified = ""
        self._fps = 0.0
        self._inference_ms: list[float] = []
        self._clock = WallClock(live=True, wall=wall, mono=mono)
        self._broker_log, self._camera_log = TroubleLog("MQTT broker"), TroubleLog("camera", mono=mono)
        self._trouble_text = ""  # the lasting faults' lines, for STATUS=

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
            disk_full=self.publisher.disk_full,
            unstored=self.publisher.unstored,
            clash=self.publisher.clash,
            version=__version__,
            timestamp=utc_iso(self._clock.now()),
            clock_synced=clock_synchronized(),
        )

    def _set_state(self, state: str) -> None:
        if state != self._state:
            log.info("state: %s", state)
        self._state = state
        self.publisher.publish_status(self.status())
        self._notify_status()

    def _status_text(self, state: str) -> str:
        """The ``STATUS=`` line: ``state``, and any fault an operator must see in ``systemctl status``."""
        text = state
        if self.publisher.disk_full:
            text += f"; disk_full: {self.publisher.unstored} window(s) not written to the state disk"
        if self.publisher.clash:
            text += f"; CLASH: {self.publisher.clash_reason}"
        return text + self._trouble_text

    def _notify_status(self) -> None:
        """systemd ``STATUS=`` (:meth:`_status_text`), sent when it changed."""
        text = self._status_text(self._state)
        if text != self._notified:
            self._notified = text
            self.notifier.status(text)

    def _ready(self, state: str) -> None:
        """``READY=1`` (sent once), its ``STATUS=`` the whole line for ``state``, faults included."""
        if self.notifier.enabled and not self.notifier.ready_sent:
            text = self._status_text(state)
            self.notifier.ready(status=text)
            if self.notifier.ready_sent:
                self._notified = text

    def _watch_trouble(self, camera: Trouble | None = None) -> None:
        """Every loop turn: lasting faults of the broker (the publisher's) and of the camera
        (``camera``, the capture's) go into ``STATUS=`` and the journal (:mod:`device.trouble`)."""
        broker = self.publisher.trouble
        lines = [broker_line(broker, self.publisher.depth) if broker else None,
                 camera_line(camera, self.wall, self.mono) if camera else None]
        self._broker_log.update(broker, lines[0])
        self._camera_log.update(camera, lines[1])
        self._trouble_text = "".join(f"; {line}" for line in lines if line)
        self._notify_status()

    def set_paused(self, on: bool) -> None:
        """The pause switch (``<prefix>/paused/set``): the run loop releases the source before the
        next frame and drops the open window unpublished.

        A flood of toggles costs neither the disk nor the journal much: the switch is written to
        the state file at most once per ``PAUSE_WRITE_S`` (the latest value; also at exit) and a
        change is logged at most once per ``PAUSE_WRITE_S``, the rest counted in the next line.
        """
        with self._pause_lock:
            if on != self.paused.is_set():
                (self.paused.set if on else self.paused.clear)()
                self._pause_dirty = True
                self._pause_changes += 1
                self._state = "paused" if on else "running"
                if on:
                    self._idle()
            self._pause_housekeeping()
        self.publisher.publish_paused(on)
        self.publisher.publish_status(self.status())

    def _pause_housekeeping(self, final: bool = False) -> None:
        """Write the pause switch and log its changes when due (``final``: now). Called with
        ``_pause_lock`` held, or from the run loop (which takes it)."""
        now = self.mono()
        if self._pause_changes and (final or now - self._pause_logged >= PAUSE_WRITE_S):
            on = self.paused.is_set()
            more = (f" (after {self._pause_changes} changes since the last line; at most one line per "
                    f"{PAUSE_WRITE_S:g} s)" if self._pause_changes > 1 else "")
            log.info("pause switch %s%s", "ON: releasing the source" if on else "OFF: resuming", more)
            self._pause_changes, self._pause_logged = 0, now
        if self._pause_dirty and (final or now - self._pause_written >= PAUSE_WRITE_S):
            try:
                self.state.set(PAUSED_KEY, "1" if self.paused.is_set() else "0")
                self._pause_dirty, self._pause_written = False, now
            except (sqlite3.Error, StateError) as exc:
                log.error("cannot store the pause switch in the state file (%s): it applies until the service "
                          "stops", exc)
                self._pause_written = now

    def _pause_tick(self, final: bool = False) -> None:
        if self._pause_changes or self._pause_dirty:
            with self._pause_lock:
                self._pause_housekeeping(final)

    def _idle(self) -> None:
        """Nothing is analysed (paused): status reports 0 fps and 0 ms, not the last window's."""
        self._fps = 0.0
        self._inference_ms.clear()

    def _emit(self, summary: WindowSummary) -> None:
        start, end = self._clock.to_wall(summary.start, summary.end)
        try:
            self.publisher.submit(lambda seq: engagement(self.settings.device_id, seq, summary, start, end,
                                                         self.publisher.sequence_id))
        except ValueError as exc:  # a payload the contract refuses (a bug): lose this window, not the unit
            log.error("window %s..%s is not published: its payload breaks the contract: %s", start, end,
                      str(exc).splitlines()[0])
            return
        self.windows += 1
        self._fps = summary.frames_analyzed / max(summary.end - summary.start, 1e-6)
        self.publisher.publish_status(self.status())
        self._notify_status()
        self._inference_ms.clear()

    def _analyse(self, frame: Frame, aggregator: WindowAggregator) -> None:
        result = self.analyzer.result(frame)
        self._inference_ms.append(self.analyzer.last_inference_ms)
        self._ready("running")
        if self._state != "running":
            self._set_state("running")
        for summary in aggregator.add(result):
            self._emit(summary)

    def _stalled(self, aggregator: WindowAggregator) -> None:
        # The open window holds the last pictures before the stall; drop it rather than
        # publish a window that mixes them with whatever comes after the re-open.
        aggregator.reset()
        self._set_state("camera_stalled")

    def run(self) -> int:
        """Analyse the source until it ends or a stop is requested. Returns the exit code.

        The final status (``finished``, else ``stopped``) and ``offline`` are published whatever
        ends the run, an exception included.

        Returns 1 when a file read once broke mid-way (after every window of the frames read
        before the fault is published), or when the capture worker or the MQTT session thread died of an unexpected
        error (systemd restarts); the watchdog pings stop within one loop turn (``POLL_S``).

        Raises:
            device.sources.SourceError: a file read once cannot be read.
        """
        live = describe(self.settings.source) != "file" or self.settings.source_loop
        self._clock = WallClock(live, wall=self.wall, mono=self.mono)
        self.publisher.start()
        self.publisher.publish_paused(self.paused.is_set())
        if self.paused.is_set():
            log.info("pause switch is ON (kept from an earlier run): the source stays closed")
        self._set_state("starting")
        code, ended, failed = 0, False, None
        try:
            while not ended and code == 0 and not self.stop_event.is_set():
                if self.publisher.dead:
                    code = self._publisher_died()
                    break
                if self.paused.is_set():
                    self._wait_paused()
                    continue
                ended, code = self._capture(live)
        except Exception as exc:  # e.g. a file that cannot be read at all: raised after the final status
            failed = exc
        finally:
            self.notifier.stopping()
            self._pause_tick(final=True)
        if code == 0 and self.publisher.dead:
            code = self._publisher_died()
        finished = ended and not live and failed is None and code == 0
        self._set_state("finished" if finished else "stopped")
        left = self.publisher.close(FLUSH_TIMEOUT_S if finished else STOP_FLUSH_S)
        log.info("%d window(s) made, %d not acknowledged by a broker (kept in the outbox when one is configured)",
                 self.windows, left)
        if failed is not None:
            raise failed
        return code

    def _publisher_died(self) -> int:
        """The MQTT session thread is gone: stop pinging the watchdog and end with exit code 1."""
        log.critical("exiting with code 1 so systemd restarts the service (the MQTT session thread died: %r)",
                     self.publisher.failure)
        return 1

    def _wait_paused(self) -> None:
        self._idle()
        self._camera_log.forget()  # the source is released on purpose: no camera trouble, no recovery line
        self._watch_trouble()
        self._set_state("paused")
        self._ready("paused")  # started paused: nothing to infer, but up
        while self.paused.is_set() and not self.stop_event.wait(POLL_S) and not self.publisher.dead:
            self._pause_tick()
            self._watch_trouble()
            self.watchdog.progress(self.mono())

    def _capture(self, live: bool) -> tuple[bool, int]:
        """Open the source and analyse it until it ends, a stop or pause is asked, or the
        capture thread dies. The camera is released before this returns.

        Returns:
            (the source ended, exit code: 1 when the capture thread died, else 0).
        """
        aggregator = WindowAggregator(self.settings.window_s, self.settings.min_group_size)
        capture = self.capture_factory(self.settings)
        capture.start()
        code, ended, last, step = 0, False, None, 0.0
        try:
            while not self.stop_event.is_set() and not self.paused.is_set():
                frame = capture.next_frame(POLL_S)
                self._pause_tick()
                now = self.mono()
                stalled = capture.supervise(now)
                if capture.crashed is not None:
                    log.critical("capture thread died: %r; exiting so systemd restarts the service", capture.crashed)
                    code = 1
                    break
                if self.publisher.dead:
                    code = self._publisher_died()
                    break
                if frame is None and capture.finished:
                    ended = True
                    code = 1 if capture.broke is not None else 0  # every window published, then exit 1
                    break
                if stalled and self._state != "camera_stalled":
                    self._stalled(aggregator)
                trouble = capture.trouble(now)
                self._watch_trouble(trouble)
                if trouble is not None:
                    # Up and retrying a failing source (a camera that boots later than the Pi):
                    # READY=1 now, not after ROOMPULSE_STALL_S, which may exceed TimeoutStartSec.
                    self._ready(self._state)
                if frame is not None:
                    if live or self._file_position is None or frame.timestamp > self._file_position:
                        self._analyse(frame, aggregator)
                        self._file_position = None if live else frame.timestamp
                    # else: a file read once, re-opened after a pause, goes on where it was
                    step = frame.timestamp - last if last is not None else step
                    last = frame.timestamp
                if capture.healthy(now):
                    self.watchdog.progress(now)
        finally:
            capture.stop()
        if self.paused.is_set() and not self.stop_event.is_set():
            aggregator.reset()
            log.info("paused: source released, open window dropped")
            return False, code
        # A file's last window ends after its last frame; a live source's when it stopped (now),
        # not at the window's nominal end, which may still be in the future.
        end = self.mono() if live else None if last is None else last + step
        for summary in aggregator.flush(end):
            self._emit(summary)
        return ended, code

    def install_signal_handlers(self) -> None:
        """SIGTERM, SIGINT and SIGHUP (a closed terminal) end the run cleanly (open window
        published, final status, ``offline``); one during the end-of-file flush cuts that to
        ``STOP_FLUSH_S``."""

        def _stop(signum, _frame):
            log.info("signal %s: stopping", signal.Signals(signum).name)
            self.stop_event.set()
            self.publisher.hurry(STOP_FLUSH_S)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, _stop)


def default_capture(settings: Settings) -> Capture:
    """The supervised capture of ``ROOMPULSE_SOURCE``: a file read once is not supervised."""
    supervised = describe(settings.source) != "file" or settings.source_loop

    def factory():
        return make_source(settings.source, loop=settings.source_loop, size=settings.camera_wh,
                           timeout_s=settings.source_timeout_s, max_size=settings.max_frame_wh)

    return Capture(factory, settings.fps, stall_s=settings.stall_s, hang_s=settings.hang_s,
                   supervised=supervised, backoff_max_s=settings.reopen_backoff_max_s)
