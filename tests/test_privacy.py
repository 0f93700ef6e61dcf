"""Privacy contract: the report covers every published field, the publisher refuses anything
but contract models, and a 2-face room gives no score anywhere (engagement topic and HA state)."""

import json

import pytest
from pydantic import Field

from conftest import WALKING, roompulse, service_env
from device.config import Settings
from device.contract import ContractError, check, channels, fields
from device.payloads import ONLINE, Engagement
from device.privacy import UndocumentedField, report, undocumented
from device.publisher import Publisher
from mqtt_helpers import Recorder
from test_ha_pause import render

PREFIX = "roompulse/test-room"


def settings(tmp_path, **kw) -> Settings:
    return Settings(_env_file=None, device_id="room-101", state_dir=tmp_path, mqtt_host="broker.lan", **kw)


def test_every_published_field_has_a_description_and_is_in_the_report(tmp_path):
    s = settings(tmp_path)
    chans = channels(s)
    assert {c.topic.rsplit("/", 1)[-1] for c in chans} == {"availability", "engagement", "status", "paused", "doctor", "config"}
    assert undocumented(chans) == []  # fails as soon as a published field lacks a description
    text = report(s)
    for chan in chans:
        assert chan.topic in text and chan.example.to_json() in text
        for name, description in fields(chan.model):
            assert f"{name}: {description}" in text or chan.words
    assert "broker.lan:1883" in text and "below 5" in text
    assert str(tmp_path / "roompulse.sqlite3") in text
    for never in ("face crops", "embeddings", "emotion", "keypoints"):
        assert never in text


def test_an_undescribed_field_is_caught(tmp_path, monkeypatch):
    class Leaky(Engagement):
        per_face_yaw: float = 0.0

    class Described(Engagement):
        room_temperature: float = Field(0.0, description="degrees Celsius")

    base = channels(settings(tmp_path))
    leaky = [c.__class__(c.topic, c.retained, c.meaning, Leaky, c.example) for c in base[1:2]]
    assert undocumented(leaky) == ["Leaky.per_face_yaw"]
    assert undocumented([c.__class__(c.topic, c.retained, c.meaning, Described, c.example) for c in base[1:2]]) == []
    monkeypatch.setattr("device.privacy.channels", lambda s: base + leaky)
    with pytest.raises(UndocumentedField, match="Leaky.per_face_yaw"):
        report(settings(tmp_path))


def test_publisher_refuses_anything_but_contract_models(tmp_path):
    publisher = Publisher(settings(tmp_path))
    for bad in ("online", {"faces": [[1, 2, 3, 4]]}, b"\xff\xd8jpeg"):
        with pytest.raises(ContractError, match="refusing to publish"):
            publisher._set_retained(publisher.topic("status"), bad)
        with pytest.raises(ContractError):
            publisher.submit(lambda seq: bad)
    assert check(ONLINE) is ONLINE
    publisher.close(0)


def test_privacy_report_command_prints_the_running_configuration(tmp_path):
    result = roompulse("privacy-report", env=service_env(1883, tmp_path, ROOMPULSE_HA_DISCOVERY="true"))
    assert result.returncode == 0, result.stderr
    assert "roompulse/test-room/engagement" in result.stdout
    assert "homeassistant/device/roompulse_test-room/config" in result.stdout
    assert "below 3" in result.stdout  # min group 3 in service_env


def test_two_faces_with_min_group_five_publish_no_score_anywhere(broker, tmp_path):
    rec = Recorder(broker.port)
    env = service_env(broker.port, tmp_path / "state", ROOMPULSE_MIN_GROUP_SIZE="5", ROOMPULSE_HA_DISCOVERY="true")
    result = roompulse("run", "--source", str(WALKING), env=env)
    assert result.returncode == 0, result.stderr
    windows = [json.loads(p) for p in rec.wait_for(f"{PREFIX}/engagement", lambda p: len(p) >= 2, timeout=10)]
    config = json.loads(rec.wait_for("homeassistant/device/roompulse_test-room/config", lambda p: p, timeout=5)[-1])
    rec.close()
    template = config["cmps"]["engagement"]["value_template"]
    shown = [render(template, json.dumps(w)) for w in windows]
    print("walking clip, min group 5:", [(w["faces_present"], w["engagement_score"], w["suppressed"]) for w in windows],
          "HA engagement state:", shown)
    assert {w["faces_present"] for w in windows} <= {1, 2}
    assert all(w["engagement_score"] is None and w["suppressed"] is True for w in windows)
    assert shown == ["None"] * len(windows)  # Home Assistant shows "unknown", never a number
