"""Issue 12, item 1: a dying MQTT session thread ends the process non-zero and stops the watchdog.

Real model, real mosquitto, real notify socket; the only fault injected is a bug in the
session thread itself (every known real trigger, such as an invalid HA prefix or a full disk
during an acknowledgement, is refused at start-up or handled, see test_fault_config.py and
test_fault_state.py, so a bug is what is left to guard against).
"""

from __future__ import annotations

import io
import json
import logging
import signal
import sys
import threading
import time

import pytest

from conftest import CLASSROOM, ROOT, Broker, fast_env
from device.config import Settings
from device.publisher import Publisher
from device.service import Service
from device.state import StateStore
from device.systemd_notify import Notifier
from mqtt_helpers import Recorder, ServiceProcess
from test_watchdog import NotifySocket

sys.path.insert(0, str(ROOT / "scripts"))
from bench import peak_rss_mb  # noqa: E402  (the benchmark's RSS probe)

WATCHDOG_USEC = 1_000_000


class BuggyPublisher(Publisher):
    """The real publisher, except that its session thread raises on the 30th outbox pump."""

    died_at: float | None = None

    def _pump(self, client):
        self.pumps = getattr(self, "pumps", 0) + 1
        if self.pumps == 30:
            self.died_at = time.monotonic()
            raise ZeroDivisionError("a bug in the session thread")
        super()._pump(client)


@pytest.mark.timeout(60)
def test_dead_session_thread_ends_the_run_non_zero_and_stops_the_watchdog(analyzer, tmp_path, caplog):
    broker = Broker(tmp_path).start()
    notify = NotifySocket(tmp_path / "notify.sock")
    avail = Recorder(broker.port, "roompulse/dead-session/availability", client_id="avail")
    cfg = Settings(_env_file=None, device_id="dead-session", source=str(CLASSROOM), source_loop=True, fps=4,
                   window_s=0.5, min_group_size=3, state_dir=tmp_path / "state", ha_discovery=False,
                   mqtt_host="127.0.0.1", mqtt_port=broker.port)
    state = StateStore(cfg.state_dir)
    publisher = BuggyPublisher(cfg, out=io.StringIO())
    notifier = Notifier({"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    service = Service(cfg, analyzer, publisher, state, notifier=notifier)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(service.run()), daemon=True)
    try:
        with caplog.at_level(logging.INFO):
            runner.start()
            runner.join(40)
        ended_at = time.monotonic()
        offline = avail.wait_for("roompulse/dead-session/availability", lambda p: p and p[-1] == "offline", 10)
    finally:
        service.stop_event.set()
        runner.join(10)
        state.close()
        avail.close()
        notify.close()
        broker.stop()
    assert publisher.died_at is not None, "the injected bug never ran"
    assert result == [1], "a dead session thread must end the run with exit code 1"
    assert ended_at - publisher.died_at < WATCHDOG_USEC / 1e6, "must end within one watchdog interval"
    late = [t for t in notify.times("WATCHDOG=1") if t > publisher.died_at + 0.3]
    assert not late, f"{len(late)} watchdog ping(s) after the session thread died"
    died = [r for r in caplog.records if r.levelno == logging.CRITICAL and "session thread died" in r.getMessage()]
    assert died and died[0].exc_info and died[0].exc_info[0] is ZeroDivisionError  # traceback through logging
    assert offline[-1] == "offline"  # the Last Will: the broker saw the connection die
    print(f"\nFIGURE dead session: run ended {ended_at - publisher.died_at:.2f} s after the thread died, "
          f"0 pings after, exit code 1")


def _connections(svc) -> int:
    return svc.stderr.count("connected to MQTT broker")


@pytest.mark.timeout(90)
def test_two_units_with_one_device_id_back_off_and_say_so(tmp_path):
    """Item 7: they used to take the connection from each other about once a second, silently."""
    broker = Broker(tmp_path).start()
    status = Recorder(broker.port, "roompulse/test-room/status", client_id="status-watch")
    notify = NotifySocket(tmp_path / "notify.sock")
    units = []
    try:
        for name in ("a", "b"):
            env = fast_env(broker.port, tmp_path / f"state-{name}", ROOMPULSE_MQTT_RECONNECT_MAX_S="30",
                           NOTIFY_SOCKET=notify.path)
            units.append(ServiceProcess(env, "--source", str(CLASSROOM), cwd=ROOT))
            units[-1].wait_until(lambda: _connections(units[-1]) >= 1, timeout=60, what=f"unit {name} connected")
        began = time.monotonic()
        time.sleep(8)
        connections = sum(_connections(u) for u in units) - 2
        elapsed = time.monotonic() - began
        for unit in units:
            unit.proc.send_signal(signal.SIGTERM)  # both at once: each may wait up to 5 s to flush
        for unit in units:
            assert unit.stop() == 0, unit.stderr
        clashes = [json.loads(p) for p in status.on("roompulse/test-room/status") if json.loads(p)["clash"]]
    finally:
        for unit in units:
            unit.stop(signal.SIGKILL)
        status.close()
        notify.close()
        broker.stop()
    assert connections <= 6, f"{connections} reconnections in {elapsed:.0f} s: no backoff"
    assert clashes, "the status must say clash"
    assert any("CLASH" in u.stderr and "another unit publishes its status" in u.stderr for u in units)
    assert any(m.startswith("STATUS=") and "CLASH" in m for _, m in notify.messages)
    print(f"\nFIGURE clash: {connections} reconnections of the two units in {elapsed:.0f} s")


@pytest.mark.timeout(60)
def test_a_broker_that_keeps_dropping_the_connection_is_not_called_a_clash(tmp_path):
    """Item 14: a broker refusing our packets (here: too large for its max_packet_size) used to be
    reported as "client id in use"."""
    broker = Broker(tmp_path, extra_conf="max_packet_size 200\n").start()
    svc = ServiceProcess(fast_env(broker.port, tmp_path / "state"), "--source", str(CLASSROOM), cwd=ROOT)
    try:
        svc.wait_until(lambda: "times in a row" in svc.stderr, timeout=45, what="the short-session message")
        assert svc.stop() == 0
    finally:
        svc.stop(signal.SIGKILL)
        broker.stop()
    line = next(x for x in svc.errors if "times in a row" in x)
    assert "may be using client id" in line and "the broker refuses something this unit sends" in line
    assert "CLASH" not in svc.stderr and "seems to be in use" not in svc.stderr


@pytest.mark.timeout(120)
def test_windows_the_broker_refuses_stay_queued_until_the_acl_is_put_right(tmp_path):
    """A PUBACK with a failure reason (here mosquitto's ACL: 135 Not authorized) used to delete
    the window. It stays in the outbox; once the ACL allows the topic (mosquitto re-reads it on
    SIGHUP) every window arrives, from seq 0, none missing."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\ntopic deny roompulse/test-room/engagement\n")
    broker = Broker(tmp_path, extra_conf=f"acl_file {acl}\n").start()
    service = ServiceProcess(fast_env(broker.port, tmp_path / "state"), "--source", str(CLASSROOM), cwd=ROOT)
    try:
        service.wait_until(lambda: service.stderr.count("refused window seq") >= 3, 60, "three refusals")
        assert "dropped" not in service.stderr
        acl.write_text("topic readwrite #\n")
        recorder = Recorder(broker.port, "roompulse/test-room/engagement")
        broker.proc.send_signal(signal.SIGHUP)
        got = recorder.wait_for("roompulse/test-room/engagement", lambda p: len(p) >= 10, 60)
        recorder.close()
    finally:
        service.stop()
        broker.stop()
    seqs = [json.loads(p)["seq"] for p in got]
    print(f"\nFIGURE refused windows: {service.stderr.count('refused window seq')} refusal(s), then seqs {seqs[:12]}")
    assert sorted(set(seqs))[:10] == list(range(10))  # the refused windows were not lost


@pytest.mark.timeout(120)
def test_a_huge_message_on_a_subscribed_topic_never_reaches_the_unit(tmp_path):
    """A 40 MB publish on <prefix>/paused/set took the unit from ~100 MB to 630 MB peak RSS
    (past the unit's MemoryMax=512M). The CONNECT's Maximum Packet Size (64 KiB) makes the
    broker drop it; the unit's peak RSS stays put and windows keep coming."""
    import paho.mqtt.client as mqtt

    broker = Broker(tmp_path).start()
    recorder = Recorder(broker.port, "roompulse/test-room/engagement")
    service = ServiceProcess(fast_env(broker.port, tmp_path / "state"), "--source", str(CLASSROOM), cwd=ROOT)
    try:
        recorder.wait_for("roompulse/test-room/engagement", lambda p: len(p) >= 5, 60)
        time.sleep(1.0)

        before = peak_rss_mb(service.proc.pid)
        sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flooder")
        sender.connect("127.0.0.1", broker.port)
        sender.loop_start()
        sender.publish("roompulse/test-room/paused/set", b"\0" * (40 << 20), qos=1).wait_for_publish(30)
        sender.disconnect()
        sender.loop_stop()
        count = len(recorder.on("roompulse/test-room/engagement"))
        recorder.wait_for("roompulse/test-room/engagement", lambda p: len(p) >= count + 5, 30)
        after = peak_rss_mb(service.proc.pid)
    finally:
        rc = service.stop()
        recorder.close()
        broker.stop()
    print(f"\nFIGURE 40 MB message on paused/set: unit peak RSS {before:.1f} -> {after:.1f} MB")
    assert rc == 0 and after - before < 20


@pytest.mark.timeout(120)
def test_a_unit_that_exits_while_its_windows_are_refused_still_says_offline(tmp_path):
    """With windows refused (ACL) each session ended cleanly (no Last Will) and the unit exited
    inside a reconnect backoff, leaving the retained availability 'online' and the status stale.
    While closing, it now reconnects at once and the session goes on to publish the final
    status and 'offline'."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\ntopic deny roompulse/test-room/engagement\n")
    broker = Broker(tmp_path, extra_conf=f"acl_file {acl}\n").start()
    # The file read once, then its 30 s wait for acknowledgements, reconnecting with the default
    # backoff (1, 2, 4, 8, 16 s ...): the wait ended inside a backoff, so nothing said offline.
    service = ServiceProcess(fast_env(broker.port, tmp_path / "state", ROOMPULSE_MQTT_RECONNECT_MAX_S="60",
                                      ROOMPULSE_SOURCE_LOOP="false", ROOMPULSE_WINDOW_S="1"),
                             "--source", str(CLASSROOM), cwd=ROOT)
    try:
        service.wait_until(lambda: "state: finished" in service.stderr, 60, "the end of the file")
        began = time.monotonic()
        assert service.proc.wait(60) == 0
        took = time.monotonic() - began
        recorder = Recorder(broker.port, "roompulse/test-room/#")
        retained = {t: recorder.wait_for(t, lambda p: p, 10)[-1] for t in
                    ("roompulse/test-room/availability", "roompulse/test-room/status")}
        recorder.close()
    finally:
        service.stop()
        broker.stop()
    print(f"\nFIGURE stopped while refused: exit after {took:.1f} s, availability {retained['roompulse/test-room/availability']}")
    assert retained["roompulse/test-room/availability"] == "offline"
    assert json.loads(retained["roompulse/test-room/status"])["state"] == "finished"  # the file was read to its end
    assert took < 40 and "not acknowledged" in service.stderr
