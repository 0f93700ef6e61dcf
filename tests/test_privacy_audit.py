"""Egress and storage audit: the service on the real classroom clip, under an audit hook,
against a real mosquitto. Sockets go to the broker only, writes stay in the state directory,
every published message validates against its model."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

from conftest import CLASSROOM, ROOT, service_env
from device.config import Settings
from device.contract import channels
from device.state import LOCK_NAME
from mqtt_helpers import Recorder

PREFIX = "roompulse/audit-room"


def validate(chans, topic: str, payload: str) -> str:
    """Validate one published message against the contract model of its topic; returns the model name."""
    chan = next((c for c in chans if c.topic == topic), None)
    assert chan is not None, f"message on a topic outside the contract: {topic}: {payload[:200]}"
    if chan.words:
        chan.model.model_validate({"value": payload})
    else:
        chan.model.model_validate_json(payload)
    return chan.model.__name__


def test_service_talks_only_to_the_broker_and_writes_only_state(broker, tmp_path):
    state = tmp_path / "state"
    rec = Recorder(broker.port)
    env = service_env(broker.port, state, ROOMPULSE_DEVICE_ID="audit-room", ROOMPULSE_HA_DISCOVERY="true",
                      PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(ROOT))
    out = tmp_path / "audit.json"
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "audit_service.py"), str(out), "run", "--source",
                             str(CLASSROOM)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    events = json.loads(out.read_text())
    rec.wait_for(f"{PREFIX}/engagement", lambda p: len(p) == 3, timeout=10)
    rec.close()
    chans = channels(Settings(_env_file=None, device_id="audit-room", state_dir=state))
    messages = [(t, p) for t, p, _ in rec.messages]
    kinds = [validate(chans, t, p) for t, p in messages]
    print(f"audit: {len(events['connect'])} socket connection(s) {events['connect']}, "
          f"{len(events['internal_connect'])} in-process loopback connection(s), "
          f"{len(events['write_open'])} file(s) opened for writing, {len(events['sqlite'])} SQLite open(s), "
          f"{len(messages)} message(s) validated: "
          + ", ".join(f"{k} {kinds.count(k)}" for k in sorted(set(kinds))))
    assert events["connect"] and all(c == ["127.0.0.1", broker.port] for c in events["connect"])
    assert all(host == "127.0.0.1" for host in events["getaddrinfo"])
    assert all(Path(p).is_relative_to(state) for p in events["write_open"]), events["write_open"]
    assert all(Path(p).is_relative_to(state) for p in events["sqlite"]), events["sqlite"]
    assert events["subprocess"] == []
    assert kinds.count("Engagement") == 3
    # Nothing per-face in the logs either: no boxes, keypoints or arrays at INFO and above.
    assert not re.search(r"\b(box|boxes|keypoints?|yaw_deg|pitch_deg)\b", result.stderr)
    assert not [l for l in result.stderr.splitlines() if "[" in l and "]" in l and "," in l]
    assert os.listdir(state) and all(n.startswith("roompulse.sqlite3") or n == LOCK_NAME for n in os.listdir(state))
    assert (state / LOCK_NAME).read_text().strip().isdigit()  # a process id, nothing else
