"""Issue 12, items 8 and 9: a retained command is never obeyed; a flood of pause toggles is
rate-limited in the log and on disk. Real service, real mosquitto."""

from __future__ import annotations

import json
import signal
import time

import paho.mqtt.client as mqtt

from conftest import CLASSROOM, ROOT, Broker, fast_env
from mqtt_helpers import Recorder, ServiceProcess

PREFIX = "roompulse/test-room"
ENGAGEMENT = f"{PREFIX}/engagement"


def publish(port: int, topic: str, payloads: list[str], retain: bool = False) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="operator")
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, p, qos=1, retain=retain) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


def test_retained_pause_command_is_not_obeyed_at_connect(tmp_path):
    broker = Broker(tmp_path).start()
    publish(broker.port, f"{PREFIX}/paused/set", ["ON"], retain=True)  # anyone, with the retain flag
    rec = Recorder(broker.port, f"{PREFIX}/#")
    svc = ServiceProcess(fast_env(broker.port, tmp_path / "state"), "--source", str(CLASSROOM), cwd=ROOT)
    try:
        svc.wait_until(lambda: "ignored a retained" in svc.stderr, timeout=60, what="the retained ON ignored")
        before = len(rec.on(ENGAGEMENT))
        rec.wait_for(ENGAGEMENT, lambda p: len(p) >= before + 5, timeout=20)  # still analysing and sending
        assert svc.stop() == 0, svc.stderr
    finally:
        svc.stop(signal.SIGKILL)
        rec.close()
        broker.stop()
    assert "pause switch ON" not in svc.stderr
    assert all(not json.loads(p)["paused"] for p in rec.on(f"{PREFIX}/status"))
    assert rec.on(f"{PREFIX}/paused") and set(rec.on(f"{PREFIX}/paused")) == {"OFF"}


def write_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/io"):
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise AssertionError("no write_bytes")


def test_a_flood_of_pause_toggles_is_rate_limited_in_the_log_and_on_disk(tmp_path):
    """Item 9: 10,000 toggles in 10 s wrote 7,277 INFO lines and an fsynced commit per toggle."""
    from device.state import StateStore

    broker = Broker(tmp_path).start()
    state = tmp_path / "state"
    svc = ServiceProcess(fast_env(broker.port, state), "--source", str(CLASSROOM), cwd=ROOT)
    try:
        svc.wait_until(lambda: "connected to MQTT broker" in svc.stderr and len(svc.lines) >= 2, timeout=60,
                       what="connected and analysing")
        lines_before, bytes_before, began = len(svc.errors), write_bytes(svc.proc.pid), time.monotonic()
        publish(broker.port, f"{PREFIX}/paused/set", ["ON", "OFF"] * 1000 + ["ON"])
        svc.wait_until(lambda: "changes since the last line" in svc.stderr, timeout=10, what="a summary line")
        time.sleep(1.0)  # mosquitto may drop some of the flood (max_queued_messages): send the last word again
        publish(broker.port, f"{PREFIX}/paused/set", ["ON"])
        # the final ON is written within a second of the last change
        svc.wait_until(lambda: StateStore(state).get("paused") == "1", timeout=5, what="the final ON stored")
        time.sleep(1.0)
        flood_s = time.monotonic() - began
        written = write_bytes(svc.proc.pid) - bytes_before
        logged = [x for x in svc.errors[lines_before:] if "pause switch" in x]
        assert StateStore(state).get("paused") == "1"
        assert svc.stop() == 0, svc.stderr
    finally:
        svc.stop(signal.SIGKILL)
        broker.stop()
    assert len(logged) <= flood_s + 2, f"{len(logged)} pause lines in {flood_s:.1f} s"
    assert any("changes since the last line" in x for x in logged)
    assert written < 512 * 1024, f"{written} bytes written for 2,001 toggles"
    print(f"\nFIGURE toggles: 2,001 toggles in {flood_s:.1f} s -> {len(logged)} log lines, {written} bytes written")
