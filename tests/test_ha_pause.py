"""Home Assistant discovery, the pause switch and client id collisions, on a real mosquitto."""

import json
import os
import time

import jinja2
import paho.mqtt.client as mqtt

from conftest import CLASSROOM, ONE_BY_ONE, ROOT, Broker, fast_env
from device.payloads import Engagement
from mqtt_helpers import Recorder, ServiceProcess

PREFIX = "roompulse/test-room"
ENGAGEMENT = f"{PREFIX}/engagement"
DISCOVERY = "homeassistant/device/roompulse_test-room/config"


def render(template: str, payload: str) -> str:
    """Render a discovery ``value_template`` the way Home Assistant's MQTT sensor does (Jinja2,
    ``value`` = the payload text, ``value_json`` = the parsed payload)."""
    return jinja2.Environment().from_string(template).render(value=payload, value_json=json.loads(payload)).strip()


def send(port: int, topic: str, payload: str, client_id: str = "operator") -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def clip_open(pid: int) -> bool:
    """Whether the process holds the classroom clip open (the source is not released)."""
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") == str(CLASSROOM.resolve()):
                return True
        except OSError:
            pass
    return False


def test_discovery_has_every_required_field_is_resent_on_ha_online_and_suppressed_score_is_none(tmp_path):
    broker = Broker(tmp_path).start()
    rec = Recorder(broker.port, "#")
    # min group 5: the clip's 4 faces are too few, so every window is suppressed
    svc = ServiceProcess(fast_env(broker.port, tmp_path / "state", ROOMPULSE_HA_DISCOVERY="true",
                                  ROOMPULSE_MIN_GROUP_SIZE="5"), "--source", str(CLASSROOM), cwd=ROOT)
    try:
        first = json.loads(rec.wait_for(DISCOVERY, lambda p: len(p) >= 1, timeout=60)[0])
        assert [r for t, _, r in rec.messages if t == DISCOVERY] == [False]  # live send; later subscribers:
        late = Recorder(broker.port, DISCOVERY, client_id="late")
        assert late.wait_for(DISCOVERY, lambda p: len(p) == 1) and late.messages[0][2] is True  # retained
        late.close()
        engagement = rec.wait_for(ENGAGEMENT, lambda p: len(p) >= 2, timeout=30)
        send(broker.port, "homeassistant/status", "online", client_id="home-assistant")
        rec.wait_for(DISCOVERY, lambda p: len(p) >= 2, timeout=10)

        rogue = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="roompulse-test-room")
        rogue.connect("127.0.0.1", broker.port)
        rogue.loop_start()
        svc.wait_until(lambda: "may be using client id" in svc.stderr, timeout=30,
                       what="client id collision logged")
        rogue.disconnect()
        rogue.loop_stop()
        assert svc.stop() == 0
    finally:
        svc.stop(9)
        rec.close()
        broker.stop()

    # Home Assistant's device discovery schema: dev (ids), o (name), cmps (p; unique_id), availability
    assert set(first) == {"dev", "o", "cmps", "avty", "qos"}
    assert first["dev"]["ids"] == ["roompulse_test-room"] and first["dev"]["name"]
    assert first["o"]["name"] == "roompulse"
    assert first["avty"] == [{"t": f"{PREFIX}/availability", "pl_avail": "online", "pl_not_avail": "offline"}]
    cmps = first["cmps"]
    assert set(cmps) == {"engagement", "faces", "status", "paused"}
    assert len({c["unique_id"] for c in cmps.values()}) == 4
    for key in ("engagement", "faces"):
        c = cmps[key]
        assert c["p"] == "sensor" and c["state_topic"] == ENGAGEMENT
        assert c["state_class"] == "measurement" and c["expire_after"] == int(2 * 0.2 + 30)
    assert cmps["engagement"]["unit_of_measurement"] == "%"
    assert cmps["status"]["p"] == "sensor" and cmps["status"]["state_topic"] == f"{PREFIX}/status"
    assert cmps["status"]["expire_after"] == 90
    switch = cmps["paused"]
    assert switch["p"] == "switch" and switch["command_topic"] == f"{PREFIX}/paused/set"
    assert switch["state_topic"] == f"{PREFIX}/paused" and (switch["payload_on"], switch["payload_off"]) == ("ON", "OFF")

    # the templates on real payloads: a suppressed window gives no number ("None" -> HA "unknown")
    real = engagement[0]
    assert json.loads(real)["suppressed"] is True
    assert render(cmps["engagement"]["value_template"], real) == "None"
    assert render(cmps["faces"]["value_template"], real) == "4"
    shown = Engagement.model_validate({**json.loads(real), "engagement_score": 0.75, "suppressed": False})
    assert render(cmps["engagement"]["value_template"], shown.to_json()) == "75.0"
    print(f"\nFIGURE discovery: {len(json.dumps(first))} bytes, components {sorted(cmps)}; re-sent after HA online")


def test_pause_stops_windows_releases_the_source_resumes_and_survives_a_restart(tmp_path):
    broker = Broker(tmp_path).start()
    rec = Recorder(broker.port, "#")
    env = fast_env(broker.port, tmp_path / "state")
    svc = ServiceProcess(env, "--source", str(CLASSROOM), cwd=ROOT)
    second = None
    try:
        rec.wait_for(ENGAGEMENT, lambda p: len(p) >= 3, timeout=60)
        assert any(clip_open(svc.proc.pid) or time.sleep(0.05) for _ in range(40)), "the clip is read while running"
        before = len(rec.on(ENGAGEMENT))
        send(broker.port, f"{PREFIX}/paused/set", "ON")
        rec.wait_for(f"{PREFIX}/paused", lambda p: p and p[-1] == "ON", timeout=5)
        status = rec.wait_for(f"{PREFIX}/status", lambda p: json.loads(p[-1])["state"] == "paused", timeout=5)
        assert json.loads(status[-1])["paused"] is True
        time.sleep(2.0)  # ten windows' worth
        during = len(rec.on(ENGAGEMENT)) - before
        assert during <= 1  # at most the window already on its way when ON arrived
        printed = len(svc.lines)
        time.sleep(1.0)
        assert len(svc.lines) == printed and not clip_open(svc.proc.pid)  # nothing analysed, source released
        idle = json.loads(rec.on(f"{PREFIX}/status")[-1])
        assert (idle["state"], idle["fps"], idle["inference_ms"]) == ("paused", 0.0, 0.0)  # not the last window's

        send(broker.port, f"{PREFIX}/paused/set", "OFF")
        rec.wait_for(ENGAGEMENT, lambda p: len(p) >= before + during + 3, timeout=30)
        assert rec.on(f"{PREFIX}/paused")[-1] == "OFF"
        send(broker.port, f"{PREFIX}/paused/set", "ON")
        rec.wait_for(f"{PREFIX}/paused", lambda p: p[-1] == "ON", timeout=5)
        assert svc.stop() == 0

        second = ServiceProcess(env, "--source", str(CLASSROOM), cwd=ROOT)
        second.wait_until(lambda: "connected to MQTT broker" in second.stderr, timeout=60, what="connection")
        after = Recorder(broker.port, f"{PREFIX}/#", client_id="after-restart")
        after.wait_for(f"{PREFIX}/status", lambda p: p and json.loads(p[-1])["state"] == "paused", timeout=30)
        assert after.on(f"{PREFIX}/paused") == ["ON"]  # retained, still ON after the restart
        time.sleep(2.0)
        assert second.lines == [] and not clip_open(second.proc.pid)
        after.close()
        assert second.stop() == 0
    finally:
        svc.stop(9)
        if second:
            second.stop(9)
        rec.close()
        broker.stop()
    print(f"\nFIGURE pause: engagement messages after ON: {during} (0.2 s windows, 2 s watched); "
          "clip file closed while paused; state ON kept across a restart")


def test_pausing_a_file_read_once_resumes_where_it_was(tmp_path):
    """ON then OFF while a file is read once: the source is re-opened after the pause, and it
    used to start the file again, so the same stretch of video was published twice (seq 0-4 and
    5-9 for the same windows). Frames analysed before the pause are now skipped."""
    clip = ONE_BY_ONE  # 1394 frames at 10 fps
    broker = Broker(tmp_path).start()
    rec = Recorder(broker.port, ENGAGEMENT)
    env = fast_env(broker.port, tmp_path / "state", ROOMPULSE_SOURCE_LOOP="false", ROOMPULSE_WINDOW_S="10",
                   ROOMPULSE_FPS="10")
    svc = ServiceProcess(env, "--source", str(clip), cwd=ROOT)
    try:
        rec.wait_for(ENGAGEMENT, lambda p: len(p) >= 2, timeout=60)
        send(broker.port, f"{PREFIX}/paused/set", "ON")
        svc.wait_until(lambda: "paused: source released" in svc.stderr, 30, "the pause")
        send(broker.port, f"{PREFIX}/paused/set", "OFF")
        assert svc.proc.wait(120) == 0
        windows = [json.loads(p) for p in rec.wait_for(ENGAGEMENT, lambda p: len(p) == len(svc.lines), 30)]
    finally:
        svc.stop()
        rec.close()
        broker.stop()
    spans = sorted((w["window_start"], w["window_end"]) for w in windows)
    analysed = sum(w["frames_analyzed"] for w in windows)
    print(f"\nFIGURE pause on a file: {len(windows)} windows, {analysed} frames analysed of 1394")
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))  # no stretch published twice
    assert analysed <= 1394  # no frame analysed twice (1594 before)
