"""Trouble that shows (issue 13, item 4): a broker that acknowledges nothing and a stalled camera
are said in one line in systemd's ``STATUS=`` and in a journal WARNING, in the technician's words.

Real mosquitto (started here), real service process and model, a test-owned notify socket as
systemd's end; the stalled camera is the scripted double of tests/camera_doubles.py.
"""

from __future__ import annotations

import io
import logging
import re
import signal
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from camera_doubles import RELEASE, ScriptedCamera
from conftest import CLASSROOM, ROOT, Broker, free_port, service_env
from device.config import Settings
from device.publisher import Publisher, describe_failure
from device.service import Service
from device.sources import SourceError
from device.sources.av_live import AvLiveSource
from device.state import StateStore
from device.supervisor import Capture
from device.systemd_notify import Notifier
from mqtt_helpers import Recorder, ServiceProcess
from test_tls_auth import make_ca
from test_watchdog import NotifySocket

WINDOW_S = 1.0
PREFIX = "roompulse/test-room"
SECRET, WRONG = "right-Pw-4411", "wrong-Pw-9902"


@pytest.fixture
def notify(tmp_path):
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def statuses(notify: NotifySocket) -> list[tuple[float, str]]:
    return [(t, m[len("STATUS="):]) for t, m in list(notify.messages) if m.startswith("STATUS=")]


def first(items, predicate, what: str, timeout: float):
    """The first of ``items()`` that satisfies ``predicate``, waiting up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [x for x in items() if predicate(x)]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no {what} within {timeout} s; got {items()[-5:]}")


@pytest.mark.timeout(60)
def test_wrong_password_shows_in_status_and_journal_within_two_windows_then_recovers(tmp_path, notify):
    broker = Broker(tmp_path, passwords={"roompulse": SECRET, "dashboard": "dash-pw"}).start()
    env = service_env(broker.port, tmp_path / "state", NOTIFY_SOCKET=notify.path, ROOMPULSE_SOURCE_LOOP="true",
                      ROOMPULSE_FPS="5", ROOMPULSE_WINDOW_S=str(WINDOW_S), ROOMPULSE_MQTT_RECONNECT_MAX_S="1",
                      ROOMPULSE_MQTT_USERNAME="roompulse", ROOMPULSE_MQTT_PASSWORD=WRONG)
    began = time.monotonic()
    svc = ServiceProcess(env, "--source", str(CLASSROOM), cwd=ROOT)
    rec = None
    try:
        ready = notify.wait_for("READY=1", 30)
        said_at, said = first(lambda: statuses(notify), lambda x: "not authorised" in x[1], "STATUS=", 10)
        seen: dict[str, float] = {}

        def journal():
            for line in list(svc.errors):
                seen.setdefault(line, time.monotonic())
            return [(t, line) for line, t in seen.items()]

        logged_at, logged = first(journal, lambda x: "WARNING" in x[1] and "not authorised" in x[1], "journal line", 10)
        # One line each: what fails, since when (UTC), how many windows wait in the outbox.
        pattern = (r"MQTT broker failing since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((\d+) window\(s\) wait in the "
                   r"outbox\): broker refused the login: not authorised \(.*\): "
                   r"check ROOMPULSE_MQTT_USERNAME and the password")
        assert re.search(pattern, said) and re.search(pattern, logged), (said, logged)
        assert "\n" not in said and said.startswith(("running", "starting"))
        assert said_at - ready <= 2 * WINDOW_S and logged_at - ready <= 2 * WINDOW_S + 0.3
        # Later lines count the windows really waiting: every window printed is unacknowledged.
        time.sleep(2.5 * WINDOW_S)
        last = statuses(notify)[-1][1]
        assert all("not authorised" in m for t, m in statuses(notify) if t >= said_at)  # READY=1's kept it too
        waiting = int(re.search(r"(\d+) window\(s\) wait", last).group(1))
        assert len(svc.lines) - 1 <= waiting <= len(svc.lines) and waiting >= 2, (last, len(svc.lines))
        assert [line for _, line in journal() if "TROUBLE" in line] == [logged]  # at most one a minute
        print(f"\nFIGURE trouble: STATUS= said 'not authorised' {said_at - ready:.2f} s after READY=1 "
              f"({said_at - began:.2f} s after start), the journal {logged_at - ready:.2f} s after READY=1; "
              f"windows {WINDOW_S:g} s\nFIGURE trouble STATUS={last}\nFIGURE trouble journal: {logged}")

        # The broker now accepts that password (SIGHUP re-reads the password file): one INFO line,
        # STATUS= back to the plain state, the queued windows delivered.
        subprocess.run(["mosquitto_passwd", "-b", str(broker.workdir / "passwd"), "roompulse", WRONG], check=True)
        rec = Recorder(broker.port, f"{PREFIX}/engagement", client_id="dashboard", username="dashboard",
                       password="dash-pw")
        broker.proc.send_signal(signal.SIGHUP)
        fine_at, fine = first(lambda: statuses(notify)[-1:], lambda x: x[0] > said_at and x[1] == "running",
                              "STATUS=running", 10)
        assert re.search(r"INFO device\.trouble: MQTT broker OK again after \d+ s", svc.stderr)
        rec.wait_for(f"{PREFIX}/engagement", lambda p: len(p) >= waiting, timeout=10)
        print(f"FIGURE trouble: STATUS=running {fine_at - said_at:.1f} s after the trouble showed "
              f"(password accepted after SIGHUP)")
        assert svc.stop() == 0
    finally:
        if svc.proc.poll() is None:
            svc.proc.kill()
        if rec:
            rec.close()
        broker.stop()
    assert WRONG not in svc.stderr and SECRET not in svc.stderr


@pytest.mark.timeout(40)
def test_no_broker_shows_only_after_three_windows_without_an_acknowledgement(tmp_path, notify):
    port = free_port()  # nothing listens there: connection refused, which a broker restart also gives
    env = service_env(port, tmp_path / "state", NOTIFY_SOCKET=notify.path, ROOMPULSE_SOURCE_LOOP="true",
                      ROOMPULSE_FPS="5", ROOMPULSE_WINDOW_S=str(WINDOW_S), ROOMPULSE_MQTT_RECONNECT_MAX_S="1")
    svc = ServiceProcess(env, "--source", str(CLASSROOM), cwd=ROOT)
    try:
        ready = notify.wait_for("READY=1", 30)
        said_at, said = first(lambda: statuses(notify), lambda x: "MQTT broker failing" in x[1], "STATUS=", 10)
        assert svc.stop() == 0
    finally:
        if svc.proc.poll() is None:
            svc.proc.kill()
    # The publisher starts just before READY=1; its silence counts from there: 3 windows.
    assert 3 * WINDOW_S - 1.0 <= said_at - ready <= 3 * WINDOW_S + 1.0, said_at - ready
    assert re.search(rf"\): connection refused: nothing listens on port {port} \(is the broker running\? is "
                     r"ROOMPULSE_MQTT_PORT right\?\)$", said), said
    print(f"\nFIGURE trouble: no broker shown {said_at - ready:.2f} s after READY=1 (3 windows of {WINDOW_S:g} s)")


@pytest.mark.timeout(30)
def test_stalled_camera_shows_what_and_since_when_then_recovers(tmp_path, notify, analyzer, caplog):
    RELEASE.clear()
    cfg = Settings(_env_file=None, device_id="trouble-room", source=str(CLASSROOM), source_loop=True, fps=30,
                   window_s=WINDOW_S, min_group_size=3, stall_s=1.0, state_dir=tmp_path / "state",
                   ha_discovery=False)
    def factory(s):
        return Capture(lambda: ScriptedCamera(12, "silent", timeout_s=0.3), s.fps, stall_s=s.stall_s, hang_s=30,
                       backoff_base_s=1.5, backoff_max_s=1.5)

    state = StateStore(cfg.state_dir)
    service = Service(cfg, analyzer, Publisher(cfg, out=io.StringIO()), state,
                      notifier=Notifier({"NOTIFY_SOCKET": notify.path}), capture_factory=factory)
    thread = threading.Thread(target=service.run, daemon=True)
    caplog.set_level(logging.INFO, logger="device")
    try:
        thread.start()
        _, said = first(lambda: statuses(notify), lambda x: "camera failing" in x[1], "camera STATUS=", 15)
        shown = [t for t, m in statuses(notify) if m == said][0]
        first(lambda: statuses(notify)[-1:], lambda x: x[0] > shown and x[1] == "running", "STATUS=running", 15)
    finally:
        service.stop_event.set()
        thread.join(15)
        state.close()
        RELEASE.set()
    assert re.fullmatch(r"camera_stalled; camera failing since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: (scripted-silent: "
                        r"read timed out|scripted-silent delivered no new picture for [\d.]+ s)", said), said
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "TROUBLE" in r.getMessage()]
    assert warnings and warnings[0] == f"TROUBLE {said.split('; ', 1)[1]}"
    assert [r for r in caplog.records if r.levelno == logging.INFO and "camera OK again after" in r.getMessage()]


def test_tls_against_a_plain_port_and_an_unreachable_rtsp_camera_say_what_is_wrong(tmp_path):
    broker = Broker(tmp_path).start()
    _, ca = make_ca(tmp_path, "test-ca")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-probe", protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(ca))
    try:
        with pytest.raises((ConnectionResetError, ssl.SSLError)) as raised:
            client.connect("127.0.0.1", broker.port)
        text = describe_failure(raised.value, tls=True, port=broker.port)
        assert text.startswith(f"TLS handshake failed: the port is not a TLS listener (port {broker.port} speaks "
                               "plain MQTT"), text
        assert "usually 8883" in text and "ROOMPULSE_MQTT_TLS_CA" in text
        # An RTSP camera address that answers but is no camera (here: the MQTT port), and one refused.
        with pytest.raises(SourceError) as camera:
            AvLiveSource(f"rtsp://127.0.0.1:{broker.port}/stream", timeout_s=2).open()
    finally:
        broker.stop()
    assert "the camera cannot be reached or sent no video stream" in str(camera.value)
    assert "[FFmpeg: Invalid data found when processing input]" in str(camera.value)
    with pytest.raises(SourceError, match="connection refused: nothing listens on that port of the camera"):
        AvLiveSource(f"rtsp://127.0.0.1:{free_port()}/stream", timeout_s=2).open()
    print(f"\nFIGURE trouble TLS vs plain: {text}\nFIGURE trouble camera: {camera.value}")
