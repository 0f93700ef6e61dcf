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
