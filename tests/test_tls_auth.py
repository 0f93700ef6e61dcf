"""TLS with a throwaway CA made by openssl here, and broker passwords, against a real mosquitto.

Failures (wrong CA, host name mismatch, wrong password) must give one clear line, be retried
with backoff, never crash the service, and never show the password anywhere.
"""

import json
import re
import subprocess

from conftest import CLASSROOM, ROOT, Broker, clean_env, fast_env, roompulse
from mqtt_helpers import Recorder, ServiceProcess

PREFIX = "roompulse/test-room"
SECRET = "s3cret-Pw-7781"
WRONG = "wrong-Pw-ABC987"


def make_ca(directory, name):
    key, crt = directory / f"{name}.key", directory / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return key, crt


def make_server_cert(directory, ca_key, ca_crt, dns="localhost"):
    """A server certificate for ``dns`` only (so connecting to 127.0.0.1 is a host name mismatch)."""
    key, csr, crt, ext = (directory / f"server.{x}" for x in ("key", "csr", "crt", "ext"))
    ext.write_text(f"subjectAltName=DNS:{dns}\nbasicConstraints=CA:FALSE\n"
                   "authorityKeyIdentifier=keyid,issuer\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={dns}"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext)],
                   check=True, capture_output=True)
    return key, crt


def retries(stderr: str) -> list[float]:
    return [float(x) for x in re.findall(r"retrying in (\d+) s", stderr)]


def test_tls_right_ca_connects_wrong_ca_and_hostname_mismatch_fail_clearly_and_retry(tmp_path):
    ca_key, ca = make_ca(tmp_path, "test-ca")
    _, other_ca = make_ca(tmp_path, "other-ca")
    key, crt = make_server_cert(tmp_path, ca_key, ca)
    broker = Broker(tmp_path, tls=(ca, crt, key)).start()
    rec = Recorder(broker.port, f"{PREFIX}/engagement")
    try:
        tls = {"ROOMPULSE_MQTT_PORT": str(broker.tls_port), "ROOMPULSE_MQTT_RECONNECT_MAX_S": "4"}
        good = roompulse("run", "--source", str(CLASSROOM), env=fast_env(
            broker.port, tmp_path / "good", ROOMPULSE_SOURCE_LOOP="false", ROOMPULSE_MQTT_HOST="localhost",
            ROOMPULSE_MQTT_TLS_CA=str(ca), **tls))
        assert good.returncode == 0, good.stderr
        sent = [json.loads(line)["seq"] for line in good.stdout.splitlines()]
        got = rec.wait_for(f"{PREFIX}/engagement", lambda p: len(p) >= len(sent), timeout=10)
        assert [json.loads(p)["seq"] for p in got] == sent and len(sent) >= 5

        wrong_ca = ServiceProcess(fast_env(broker.port, tmp_path / "wrong", ROOMPULSE_MQTT_HOST="localhost",
                                           ROOMPULSE_MQTT_TLS_CA=str(other_ca), **tls),
                                  "--source", str(CLASSROOM), cwd=ROOT)
        mismatch = ServiceProcess(fast_env(broker.port, tmp_path / "mismatch", ROOMPULSE_MQTT_HOST="127.0.0.1",
                                           ROOMPULSE_MQTT_TLS_CA=str(ca), **tls),
                                  "--source", str(CLASSROOM), cwd=ROOT)
        for svc in (wrong_ca, mismatch):
            svc.wait_until(lambda: len(retries(svc.stderr)) >= 3, timeout=60, what="three failed attempts")
        for svc in (wrong_ca, mismatch):
            assert svc.stop() == 0  # still running, stops cleanly: no crash
            assert len(svc.lines) >= 3  # and it kept analysing while it could not connect
            assert "Traceback" not in svc.stderr
            assert retries(svc.stderr)[:3] == [1, 2, 4]  # exponential backoff
    finally:
        rec.close()
        broker.stop()
    # mosquitto sends its CA along, so OpenSSL reports the unknown root as a self-signed chain
    assert re.search(r"TLS certificate check failed \((self-signed certificate in certificate chain|"
                     r"unable to get local issuer certificate)\)", wrong_ca.stderr)
    assert re.search(r"TLS certificate check failed \((Hostname|IP address) mismatch", mismatch.stderr)
    print("\nFIGURE tls wrong CA:", [l for l in wrong_ca.errors if "retrying" in l][0])
    print("FIGURE tls mismatch:", [l for l in mismatch.errors if "retrying" in l][0])


def test_wrong_password_fails_clearly_right_one_from_credentials_dir_works_never_shown(tmp_path):
    broker = Broker(tmp_path, passwords={"roompulse": SECRET, "dashboard": "dash-pw"}).start()
    everything = None
    bad_file = tmp_path / "bad-password"
    bad_file.write_text(WRONG + "\n")
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt_password").write_text(SECRET + "\n")
    outputs = []
    try:
        wrong = ServiceProcess(fast_env(broker.port, tmp_path / "wrong", ROOMPULSE_MQTT_USERNAME="roompulse",
                                        ROOMPULSE_MQTT_PASSWORD_FILE=str(bad_file)),
                               "--source", str(CLASSROOM), cwd=ROOT)
        wrong.wait_until(lambda: len(retries(wrong.stderr)) >= 2, timeout=60, what="two refused attempts")
        assert wrong.stop() == 0
        outputs += wrong.lines + wrong.errors
        # mosquitto 2.0 answers a wrong password with "Not authorized" (MQTT v5 reason 0x87)
        assert re.search("broker refused the login: (not authorised|bad user name or password)", wrong.stderr)
        assert "check ROOMPULSE_MQTT_USERNAME and the password" in wrong.stderr

        checked = roompulse("check-config", env=fast_env(broker.port, tmp_path / "c", ROOMPULSE_MQTT_USERNAME="roompulse",
                                                         ROOMPULSE_MQTT_PASSWORD=WRONG))
        assert "ROOMPULSE_MQTT_PASSWORD=***" in checked.stdout
        outputs += [checked.stdout, checked.stderr]

        everything = Recorder(broker.port, "#", client_id="dashboard", username="dashboard", password="dash-pw")
        right = roompulse("run", "--source", str(CLASSROOM), env=fast_env(
            broker.port, tmp_path / "right", ROOMPULSE_SOURCE_LOOP="false", ROOMPULSE_MQTT_USERNAME="roompulse",
            CREDENTIALS_DIRECTORY=str(creds)))
        assert right.returncode == 0, right.stderr
        outputs += [right.stdout, right.stderr]
        sent = [json.loads(line)["seq"] for line in right.stdout.splitlines()]
        got = everything.wait_for(f"{PREFIX}/engagement", lambda p: len(p) >= len(sent), timeout=10)
        assert [json.loads(p)["seq"] for p in got] == sent
        outputs += [p for _, p, _ in everything.messages]  # status, availability, engagement
    finally:
        if everything:
            everything.close()
        broker.stop()
    text = "\n".join(outputs)
    assert SECRET not in text and WRONG not in text
    print(f"\nFIGURE auth: scanned {len(text)} characters of stdout, stderr, check-config and published "
          "payloads: neither password appears")


def test_tls_files_that_cannot_work_stop_start_up_with_78_naming_the_variable(tmp_path):
    """An encrypted client key made run ask 'Enter PEM pass phrase:' on a terminal (the MQTT
    thread blocked, nothing reported) and fail every handshake under systemd; a CA file with no
    certificate and a key of another certificate only showed as failing handshakes."""
    ca_key, ca_crt = make_ca(tmp_path, "ca")
    key, crt = make_server_cert(tmp_path, ca_key, ca_crt)
    other_key, _ = make_ca(tmp_path, "other")
    locked = tmp_path / "locked.key"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:x", "-out", str(locked)],
                   check=True, capture_output=True)
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    cases = {"ROOMPULSE_MQTT_TLS_KEY: " + str(locked) + " is encrypted with a passphrase": (ca_crt, crt, locked),
             "ROOMPULSE_MQTT_TLS_KEY: " + str(other_key) + " is not the key of the certificate": (ca_crt, crt, other_key),
             "ROOMPULSE_MQTT_TLS_CA: " + str(junk) + " holds no CA certificate": (junk, crt, key)}
    for expected, (ca, cert, k) in cases.items():
        env = clean_env(ROOMPULSE_MQTT_HOST="localhost", ROOMPULSE_MQTT_TLS_CA=str(ca), ROOMPULSE_MQTT_TLS_CERT=str(cert),
                        ROOMPULSE_MQTT_TLS_KEY=str(k), ROOMPULSE_STATE_DIR=str(tmp_path / "state"))
        result = roompulse("run", "--source", str(CLASSROOM), env=env, stdin=subprocess.DEVNULL, timeout=60)
        print(result.stderr.strip().splitlines()[-1])
        assert result.returncode == 78 and expected in result.stderr, result.stderr
    good = clean_env(ROOMPULSE_MQTT_HOST="localhost", ROOMPULSE_MQTT_TLS_CA=str(ca_crt), ROOMPULSE_MQTT_TLS_CERT=str(crt),
                     ROOMPULSE_MQTT_TLS_KEY=str(key))
    assert roompulse("check-config", env=good).returncode == 0


def test_a_client_certificate_without_tls_or_without_its_key_exits_78(tmp_path):
    """A client certificate with no CA (TLS off: it was silently unused), and one whose file holds
    no key with no ROOMPULSE_MQTT_TLS_KEY (the message said 'None')."""
    ca_key, ca_crt = make_ca(tmp_path, "ca")
    key, crt = make_server_cert(tmp_path, ca_key, ca_crt)
    no_ca = roompulse("check-config", env=clean_env(ROOMPULSE_MQTT_TLS_CERT=str(crt), ROOMPULSE_MQTT_TLS_KEY=str(key)))
    assert no_ca.returncode == 78 and "ROOMPULSE_MQTT_TLS_CERT is set without ROOMPULSE_MQTT_TLS_CA" in no_ca.stderr
    no_key = roompulse("check-config", env=clean_env(ROOMPULSE_MQTT_TLS_CA=str(ca_crt), ROOMPULSE_MQTT_TLS_CERT=str(crt)))
    assert no_key.returncode == 78 and f"{crt} holds no key that goes with its certificate" in no_key.stderr
    assert "None" not in no_key.stderr
