"""systemd notify and watchdog: READY after the first inference, pings stop on a hang.

Each test binds its own AF_UNIX datagram socket and passes it as NOTIFY_SOCKET, as
systemd does. Model, runtime and service are real; only the camera (and, for the hung
inference, a wrapper that blocks the real analyzer) are test doubles.
"""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from camera_doubles import RELEASE, ScriptedCamera
from conftest import CLASSROOM, ROOT, clean_env
from device.config import Settings
from device.publisher import Publisher
from device.service import Service
from device.state import StateStore
from device.supervisor import Capture
from device.systemd_notify import Notifier

WATCHDOG_USEC = 1_000_000  # WatchdogSec=1s: pings due every 1/3 s, systemd kills after 1 s without one


class NotifySocket:
    """The service manager's end: records (monotonic time, message) of every datagram."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def times(self, message: str) -> list[float]:
        return [t for t, m in list(self.messages) if m == message]

    def wait_for(self, message: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.times(message):
                return self.times(message)[0]
            time.sleep(0.02)
        raise AssertionError(f"no {message} within {timeout} s; got {self.messages[-5:]}")

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


@pytest.fixture(autouse=True)
def _release():
    RELEASE.clear()
    yield
    RELEASE.set()


def make_service(tmp_path, analyzer, notify, capture_factory=None):
    cfg = Settings(_env_file=None, device_id="wd-room", source=str(CLASSROOM), source_loop=True, fps=4,
                   window_s=1.0, min_group_size=3, state_dir=tmp_path / "state", ha_discovery=False)
    notifier = Notifier({"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    state = StateStore(cfg.state_dir)
    service = Service(cfg, analyzer, Publisher(cfg, out=io.StringIO()), state, notifier=notifier,
                      capture_factory=capture_factory)
    thread = threading.Thread(target=service.run, daemon=True)
    return service, thread, state


def run_until_ready(notify: NotifySocket, source: str, **settings: str) -> tuple[float, str]:
    """``roompulse run --source source`` under ``notify``: wait for READY=1, run 1 s more, SIGTERM,
    exit code 0. Returns when READY=1 came (monotonic) and the run's stderr."""
    env = clean_env(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(WATCHDOG_USEC), **settings)
    proc = subprocess.Popen([sys.executable, "-m", "device", "run", "--source", source], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ready = notify.wait_for("READY=1", 30)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return ready, stderr


@pytest.mark.timeout(60)
def test_cli_sends_ready_pings_and_stopping(notify, tmp_path):
    ready, _ = run_until_ready(notify, str(CLASSROOM), ROOMPULSE_SOURCE_LOOP="true", ROOMPULSE_FPS="4",
                            ROOMPULSE_STATE_DIR=str(tmp_path / "state"))
    pings = notify.times("WATCHDOG=1")
    healthy = [t for t in pings if ready <= t <= ready + 1.0]
    assert len(healthy) >= 2
    assert max(b - a for a, b in zip(pings, pings[1:])) < WATCHDOG_USEC / 1e6  # never late while healthy
    assert notify.times("STOPPING=1") and notify.times("STOPPING=1")[0] > ready


class HangingAnalyzer:
    """The real analyzer, except that the ``hang_after``-th call blocks until released."""

    def __init__(self, real, hang_after: int):
        self.real, self.hang_after, self.calls = real, hang_after, 0
        self.hung_at: float | None = None
        self.accelerator = real.accelerator
        self.last_inference_ms = 0.0

    def result(self, frame):
        self.calls += 1
        if self.calls == self.hang_after:
            self.hung_at = time.monotonic()
            RELEASE.wait()
        out = self.real.result(frame)
        self.last_inference_ms = self.real.last_inference_ms
        return out


@pytest.mark.timeout(60)
def test_hung_inference_stops_watchdog_pings(analyzer, notify, tmp_path):
    hanging = HangingAnalyzer(analyzer, hang_after=6)
    service, thread, state = make_service(tmp_path, hanging, notify)
    thread.start()
    ready = notify.wait_for("READY=1", 30)
    deadline = time.monotonic() + 30
    while hanging.hung_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # 15 ping intervals
    RELEASE.set()
    service.stop_event.set()
    thread.join(20)
    state.close()
    pings = notify.times("WATCHDOG=1")
    assert any(ready <= t < hanging.hung_at for t in pings)
    assert not [t for t in pings if hanging.hung_at + 0.01 < t < hanging.hung_at + 1.5]


@pytest.mark.timeout(60)
def test_hung_camera_read_stops_watchdog_pings(analyzer, notify, tmp_path):
    hang_s = 1.0

    def factory(s):
        return Capture(lambda: ScriptedCamera(5, "blocks"), s.fps, stall_s=0.5, hang_s=hang_s, backoff_base_s=0.1)

    service, thread, state = make_service(tmp_path, analyzer, notify, factory)
    thread.start()
    notify.wait_for("READY=1", 30)
    time.sleep(4.0)
    stopped_at = time.monotonic()
    RELEASE.set()
    service.stop_event.set()
    thread.join(20)
    state.close()
    pings = notify.times("WATCHDOG=1")
    # The first read blocks about 0.6 s after the start: pings before, none once it has
    # been stuck for hang_s (the re-opened camera keeps the loop busy, but not healthy).
    assert pings and pings[0] < stopped_at - 3.0
    assert not [t for t in pings if stopped_at - 2.0 < t < stopped_at]


class BuggySource(ScriptedCamera):
    def read(self):
        if self.sent >= 3:
            raise ZeroDivisionError("a bug in a source")
        return super().read()


@pytest.mark.timeout(60)
def test_dead_capture_thread_ends_the_run_non_zero(analyzer, notify, tmp_path):
    def factory(s):
        return Capture(lambda: BuggySource(10, "silent"), s.fps, stall_s=5, hang_s=30)

    service, thread, state = make_service(tmp_path, analyzer, notify, factory)
    began = time.monotonic()
    assert service.run() == 1
    assert time.monotonic() - began < 10
    state.close()


@pytest.mark.timeout(60)
def test_started_paused_is_ready_and_keeps_pinging(analyzer, notify, tmp_path):
    """Pause switch kept ON from an earlier run: no camera, no inference, yet up and supervised."""
    StateStore(tmp_path / "state").set("paused", "1")
    opened = []

    def factory(s):
        opened.append(1)
        return Capture(lambda: ScriptedCamera(5, "frozen"), s.fps, stall_s=5, hang_s=30)

    service, thread, state = make_service(tmp_path, analyzer, notify, factory)
    thread.start()
    ready = notify.wait_for("READY=1", 10)
    time.sleep(1.2)
    service.stop_event.set()
    thread.join(20)
    state.close()
    assert not opened  # the camera was never opened
    assert len([t for t in notify.times("WATCHDOG=1") if t >= ready]) >= 2


@pytest.mark.timeout(60)
def test_camera_missing_at_boot_is_ready_stalled_and_keeps_pinging(notify, tmp_path):
    """A camera that is not there yet (it boots later than the Pi): the service is up and
    retrying, so READY=1 comes as soon as the source is seen failing, with the trouble on its
    STATUS= line, and the pings go on. Waiting for a first inference, or for ROOMPULSE_STALL_S
    (here 60 s; it may be up to 3600), would let TimeoutStartSec=120s restart it forever."""
    began = time.monotonic()
    ready, stderr = run_until_ready(notify, "/dev/video97", ROOMPULSE_STALL_S="60",
                                    ROOMPULSE_STATE_DIR=str(tmp_path / "state"))
    said = [m for t, m in notify.messages if t <= ready + 0.01 and m.startswith("STATUS=")]
    print(f"\nFIGURE camera missing at boot: READY=1 {ready - began:.1f} s after start with {said[-1]!r}")
    assert said and "camera failing since" in said[-1] and "no such camera device" in said[-1]
    # and it stays said: no "OK again" while no picture ever came
    assert all("camera failing since" in m for t, m in notify.messages if t >= ready and m.startswith("STATUS="))
    assert "camera OK again" not in stderr
    assert len([t for t in notify.times("WATCHDOG=1") if ready <= t <= ready + 1.0]) >= 2
