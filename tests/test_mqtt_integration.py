"""roompulse run on the real classroom clip against a real mosquitto the test starts."""

import json
import signal
import subprocess
import sys
import time

import conftest
from conftest import CLASSROOM, ROOT, roompulse
from device.payloads import Engagement
from mqtt_helpers import Recorder

PREFIX = "roompulse/test-room"
ENGAGEMENT_KEYS = {
    "schema", "device_id", "seq", "sequence_id", "window_start", "window_end", "frames_analyzed",
    "faces_present", "faces_present_max", "engagement_score", "suppressed",
}


def service_env(broker, tmp_path, **extra):
    return conftest.service_env(broker.port, tmp_path / "state", **extra)


def test_every_window_reaches_a_subscriber_and_validates(broker, tmp_path):
    rec = Recorder(broker.port)
    result = roompulse("run", "--source", str(CLASSROOM), env=service_env(broker, tmp_path))
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    received = rec.wait_for(f"{PREFIX}/engagement", lambda p: len(p) >= 3, timeout=10)
    time.sleep(0.5)
    received = [json.loads(p) for p in rec.on(f"{PREFIX}/engagement")]
    rec.close()
    assert received == printed  # printed and published: the same payloads, in order
    assert [m["seq"] for m in received] == [0, 1, 2]  # 3-second clip, 1-second windows
    for message in received:
        assert set(message) == ENGAGEMENT_KEYS
        Engagement.model_validate(message)  # extra="forbid": no other field
        assert message["faces_present"] == 4 and message["engagement_score"] is not None
        assert not message["suppressed"]
    status = json.loads(rec.on(f"{PREFIX}/status")[-1])
    assert status["state"] == "finished" and status["accelerator"] == "cpu"
    assert rec.on(f"{PREFIX}/availability")[-1] == "offline"  # clean exit says offline


def test_seq_survives_a_restart(broker, tmp_path):
    env = service_env(broker, tmp_path)
    first = roompulse("run", "--source", str(CLASSROOM), env=env)
    second = roompulse("run", "--source", str(CLASSROOM), env=env)
    seqs = [json.loads(l)["seq"] for l in (first.stdout + second.stdout).splitlines()]
    assert seqs == [0, 1, 2, 3, 4, 5]


def test_availability_online_then_offline_after_sigkill(broker, tmp_path):
    env = service_env(broker, tmp_path, ROOMPULSE_SOURCE_LOOP="true")
    proc = subprocess.Popen([sys.executable, "-m", "device", "run", "--source", str(CLASSROOM)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        rec = Recorder(broker.port)
        rec.wait_for(f"{PREFIX}/engagement", lambda p: len(p) >= 1, timeout=60)
        late = Recorder(broker.port, f"{PREFIX}/availability", client_id="late-subscriber")
        assert late.wait_for(f"{PREFIX}/availability", lambda p: p == ["online"], timeout=5)
        assert late.messages[0][2] is True  # delivered as a retained message
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        rec.wait_for(f"{PREFIX}/availability", lambda p: p and p[-1] == "offline", timeout=10)
        late.close()
        after = Recorder(broker.port, f"{PREFIX}/availability", client_id="after-kill")
        assert after.wait_for(f"{PREFIX}/availability", lambda p: p == ["offline"], timeout=5)
        after.close()
        rec.close()
    finally:
        if proc.poll() is None:
            proc.kill()
