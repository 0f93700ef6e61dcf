"""``roompulse doctor``: every precondition of a working unit checked for real, one line each.

Each check prints ``OK``, ``WARN`` or ``FAIL``, what it found and, when it is not OK, the fix:

- the env file read, the configuration (all of ``check-config``) and the values in force
  (the port that applies, the client id, the topic prefix);
- the model files against the manifest, the self-test, the accelerator that would run;
- the source opens and delivers a frame within ``ROOMPULSE_SOURCE_TIMEOUT_S``;
- the state directory is writable and its outbox readable (read-only: the doctor never
  creates the database, which could leave a file the service user cannot write);
- the broker: the name resolves, TCP connects, TLS handshakes (a plain MQTT listener behind a
  TLS setting is named as such), the credentials are accepted and a QoS 1 publish is
  acknowledged; from a short-lived client with its own id (``<client id>-doctor``), so the
  running unit is not disconnected. The one message is ``doctor`` on ``<prefix>/doctor``,
  not retained, expiring after 60 s: no measurement, no status;
- the clock is synchronised (a warning only: a Pi has no real-time clock and syncs after boot).

Exit status 0 when nothing FAILs (warnings do not count); 1 otherwise; 78 when the
configuration itself is invalid (then nothing else can be checked).
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from device.config import DEFAULT_ENV_FILE, EX_CONFIG, SMALL_GROUP_FLOOR, ConfigError, Settings, redact_url

OK, WARN, FAIL = "OK", "WARN", "FAIL"
NET_TIMEOUT_S = 5.0
ACK_TIMEOUT_S = 10.0
# Extra seconds a source gets beyond ROOMPULSE_SOURCE_TIMEOUT_S (decoder start-up, picamera2 tuning).
SOURCE_GRACE_S = 5.0
DOCTOR_TOPIC = "doctor"
DOCTOR_EXPIRY_S = 60


@dataclass(frozen=True)
class Check:
    """One line of the report: ``status`` OK / WARN / FAIL, what was checked, what was found, the fix."""

    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -- fix: {self.fix}" if self.fix and self.status != OK else ""
        return f"{self.status:<4}  {self.name:<14} {self.detail}{fix}"


def check_env_file(env_file: Path | None) -> Check:
    """Which env file the settings come from."""
    if env_file is not None:
        return Check(OK, "env file", f"{env_file} read")
    return Check(WARN, "env file", f"none ({DEFAULT_ENV_FILE} does not exist): settings from the environment "
                 "and defaults only", f"copy systemd/roompulse.env.example to {DEFAULT_ENV_FILE} and edit it")


def check_values(settings: Settings) -> list[Check]:
    """The values in force that matter most when something does not work."""
    s = settings
    broker = f"{s.mqtt_host}:{s.port}{' TLS' if s.mqtt_tls_ca else ''}" if s.mqtt_host else "none (stdout only)"
    out = [Check(OK, "settings", f"device_id={s.device_id} client_id={s.client_id} prefix={s.prefix} "
                                 f"source={redact_url(s.source)} broker={broker} state_dir={s.state_dir}")]
    if s.min_group_size < SMALL_GROUP_FLOOR:
        out.append(Check(WARN, "privacy", f"ROOMPULSE_MIN_GROUP_SIZE={s.min_group_size} is below {SMALL_GROUP_FLOOR} "
                                          "(ROOMPULSE_ALLOW_SMALL_GROUPS override)",
                         f"use ROOMPULSE_MIN_GROUP_SIZE={SMALL_GROUP_FLOOR} or more"))
    return out


def check_model(settings: Settings) -> tuple[list[Check], object | None]:
    """Model files against the manifest, self-test, accelerator. Returns the checks and the analyzer."""
    from device.models import ModelError, select, verify
    from device.pipeline import build_analyzer
    from device.runtime import AcceleratorUnavailable, RuntimeUnavailable
    from device.selftest import SelfTestError

    try:
        entries = select(settings.model)
        for entry in entries:
            verify(entry)
    except ModelError as exc:
        return [Check(FAIL, "model files", str(exc).split("; ")[0], _hint(str(exc)))], None
    checks = [Check(OK, "model files", f"{settings.model}: {len(entries)} file(s) match models/manifest.json (sha256)")]
    try:
        analyzer = build_analyzer(settings)
    except SelfTestError as exc:
        return checks + [Check(FAIL, "self-test", str(exc), "restore the models ('git checkout -- models/') "
                                                            "or use ROOMPULSE_ACCELERATOR=cpu")], None
    except AcceleratorUnavailable as exc:
        return checks + [Check(FAIL, "accelerator", str(exc), "attach the Edge TPU and install libedgetpu1-std, "
                                                              "or set ROOMPULSE_ACCELERATOR=auto or cpu")], None
    except (ModelError, RuntimeUnavailable, ValueError) as exc:
        return checks + [Check(FAIL, "self-test", str(exc), "see the message; models/README.md")], None
    checks.append(Check(OK, "self-test", "model ran on models/selftest.png and gave the stored result"))
    reason = ""
    if analyzer.accelerator == "cpu" and settings.accelerator == "auto":
        reason = " (ROOMPULSE_ACCELERATOR=auto: no Edge TPU delegate or compiled model here)"
    checks.append(Check(OK, "accelerator", f"{analyzer.accelerator}{reason}"))
    return checks, analyzer


def _hint(message: str) -> str:
    return message.split("; ", 1)[1] if "; " in message else "see models/README.md"


def with_timeout(fn: Callable[[], object], timeout_s: float):
    """Run ``fn`` in a daemon thread; its result, or raise TimeoutError after ``timeout_s`` seconds.

    A call still running then is left behind (a camera read cannot be interrupted).
    """
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="doctor-probe")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout_s:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def check_source(settings: Settings) -> Check:
    """The source opens and delivers a frame within its timeout."""
    from device.sources import SourceError, SourceUnavailable, describe, make_source, preflight

    name = redact_url(settings.source)
    kind = describe(settings.source)
    try:
        preflight(settings.source)
    except SourceUnavailable as exc:
        fix = ("run scripts/install-pi.sh again" if "fails to import" in str(exc)
               else "sudo apt install python3-picamera2 (Raspberry Pi OS)")
        return Check(FAIL, "source", str(exc), f"{fix}, or set ROOMPULSE_SOURCE to a USB camera or stream")
    if kind == "file" and not Path(settings.source).is_absolute():
        # The service (systemd/roompulse.service) runs from /, not from here.
        return Check(FAIL, "source", f"file {name} is a relative path: found from {Path.cwd()}, but the "
                     "service runs from / and would not find it", f"set ROOMPULSE_SOURCE={Path(settings.source).resolve()}")
    source = make_source(settings.source, loop=False, size=settings.camera_wh, timeout_s=settings.source_timeout_s,
                         max_size=settings.max_frame_wh)
    began = time.monotonic()

    def first_frame():
        source.open()
        return source.read()

    fixes = {"file": "set ROOMPULSE_SOURCE to an existing image or video file, or to the camera",
             "v4l2": "check the USB cable and 'ls /dev/video*'; the service user needs the video group",
             "stream": "check the camera's address, user and password, and that it is on the network",
             "picamera2": "check the ribbon cable and 'rpicam-hello --list-cameras'; no other program may hold "
                          "the camera (stop the service first: sudo systemctl stop roompulse)"}
    try:
        frame = with_timeout(first_frame, settings.source_timeout_s + SOURCE_GRACE_S)
    except (SourceError, TimeoutError, OSError) as exc:
        text = str(exc) if name in str(exc) else f"{kind} {name}: {exc}"
        return Check(FAIL, "source", text, fixes[kind])
    finally:
        try:
            source.close()
        except Exception:  # noqa: BLE001 - a source that failed to open may fail to close
            pass
    if frame is None:
        return Check(FAIL, "source", f"{kind} {name} opened but delivered no frame", fixes[kind])
    return Check(OK, "source", f"{kind} {name}: first frame {frame.width}x{frame.height} px "
                               f"after {time.monotonic() - began:.1f} s")


def check_state(settings: Settings) -> list[Check]:
    """The state directory is writable and the outbox (if any) readable; nothing is created but
    one temporary file, removed at once."""
    from device.state import DB_NAME

    directory = Path(settings.state_dir)
    fix = (f"create it for the service user: sudo install -d -o roompulse -g roompulse {directory} "
           "(systemd's StateDirectory=roompulse does this for /var/lib/roompulse), or set ROOMPULSE_STATE_DIR")
    if not directory.is_dir():
        return [Check(FAIL, "state dir", f"{directory} does not exist", fix)]
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".doctor-"):
            pass
    except OSError as exc:
        return [Check(FAIL, "state dir", f"{directory} is not writable ({exc.strerror})", fix)]
    checks = [Check(OK, "state dir", f"{directory} is writable"
                    + (" (as root: run the doctor as the service user to check its rights: "
                       "sudo -u roompulse ...)" if os.geteuid() == 0 else ""))]
    db = directory / DB_NAME
    if not db.exists():
        checks.append(Check(OK, "outbox", f"no {DB_NAME} yet: created at the first start"))
        return checks
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            depth = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] if "outbox" in tables else 0
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return checks + [Check(FAIL, "outbox", f"{db} cannot be read ({exc})",
                               f"move the file away (the unsent windows in it are lost) and restart")]
    return checks + [Check(OK, "outbox", f"{db} readable, {depth} window(s) waiting")]


def _plain_mqtt(host: str, port: int) -> bool:
    """True when ``host:port`` answers an MQTT 3.1.1 CONNECT with a CONNACK in the clear."""
    client_id = b"roompulse-doctor-probe"
    var = b"\x00\x04MQTT\x04\x02\x00\x05"  # protocol name, level 4, clean session, keepalive 5 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    packet = b"\x10" + bytes([len(var) + len(payload)]) + var + payload
    try:
        with socket.create_connection((host, port), timeout=NET_TIMEOUT_S) as sock:
            sock.sendall(packet)
            answer = sock.recv(4)
            if answer[:1] == b"\x20":
                sock.sendall(b"\xe0\x00")  # DISCONNECT
                return True
    except OSError:
        pass
    return False


def _speaks_tls(host: str, port: int) -> bool:
    """True when ``host:port`` completes a TLS handshake (certificate not checked: only the protocol)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=NET_TIMEOUT_S) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


def check_broker(settings: Settings) -> list[Check]:
    """Name, TCP, TLS, credentials and one acknowledged QoS 1 publish (a contract message:
    ``<prefix>/doctor``, see :func:`device.contract.channels`)."""
    s = settings
    if not s.mqtt_host:
        return [Check(WARN, "broker", "ROOMPULSE_MQTT_HOST is empty: windows are printed to stdout, nothing is sent",
                      "set ROOMPULSE_MQTT_HOST to the broker's name")]
    host, port = s.mqtt_host, s.port
    try:
        addresses = sorted({a[4][0] for a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except socket.gaierror as exc:
        return [Check(FAIL, "broker name", f"{host} does not resolve ({exc.strerror})",
                      "check ROOMPULSE_MQTT_HOST and the unit's DNS (resolvectl status)")]
    checks = [Check(OK, "broker name", f"{host} -> {', '.join(addresses)}")]
    try:
        socket.create_connection((host, port), timeout=NET_TIMEOUT_S).close()
    except OSError as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
        return checks + [Check(FAIL, "broker tcp", f"{host}:{port}: {reason}",
                               "check that the broker runs and listens on that port "
                               "(ROOMPULSE_MQTT_PORT; 1883 plain, 8883 TLS) and that no firewall blocks it")]
    checks.append(Check(OK, "broker tcp", f"{host}:{port} accepts connections"))
    if s.mqtt_tls_ca:
        tls = check_tls(s)
        checks.append(tls)
        if tls.status == FAIL:
            return checks
    checks += check_mqtt(s)
    return checks


def check_tls(s: Settings) -> Check:
    """A TLS handshake with the configured CA (and client certificate); a plain listener is named."""
    host, port = s.mqtt_host, s.port
    try:
        context = ssl.create_default_context(cafile=str(s.mqtt_tls_ca))
        if s.mqtt_tls_cert:
            context.load_cert_chain(str(s.mqtt_tls_cert), str(s.mqtt_tls_key) if s.mqtt_tls_key else None)
        with socket.create_connection((host, port), timeout=NET_TIMEOUT_S) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return Check(FAIL, "broker tls", f"{host}:{port}: certificate check failed ({exc.verify_message})",
                     "ROOMPULSE_MQTT_TLS_CA must be the CA that signed the broker's certificate, and "
                     "ROOMPULSE_MQTT_HOST a name the certificate is issued for")
    except (ssl.SSLError, OSError) as exc:
        if _plain_mqtt(host, port):
            return Check(FAIL, "broker tls", f"{host}:{port} is a plain (unencrypted) MQTT listener, not TLS",
                         "set ROOMPULSE_MQTT_PORT to the broker's TLS port (usually 8883), or remove "
                         "ROOMPULSE_MQTT_TLS_CA to connect without TLS")
        return Check(FAIL, "broker tls", f"{host}:{port}: TLS handshake failed ({type(exc).__name__}: {exc})",
                     "check the broker's TLS listener and the ROOMPULSE_MQTT_TLS_* files")
    return Check(OK, "broker tls", f"{host}:{port} {version}, certificate verified for {host}")


def check_mqtt(s: Settings) -> list[Check]:
    """Log in as the unit would (its user, password, TLS) with a distinct client id, publish one
    QoS 1 message and wait for the broker's acknowledgement."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes

    client_id = f"{s.client_id}-doctor"[:128]
    connected, published = threading.Event(), threading.Event()
    result: dict = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        result["connect"] = reason_code
        connected.set()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        result.setdefault("closed", reason_code)
        connected.set()

    def on_publish(client, userdata, mid, reason_code, properties):
        result["publish"] = reason_code
        published.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         reconnect_on_failure=False)
    try:
        password = s.password()
    except ConfigError as exc:
        return [Check(FAIL, "broker login", str(exc), "check ROOMPULSE_MQTT_PASSWORD_FILE")]
    if s.mqtt_username:
        client.username_pw_set(s.mqtt_username, password)
    if s.mqtt_tls_ca:
        client.tls_set(ca_certs=str(s.mqtt_tls_ca), certfile=str(s.mqtt_tls_cert) if s.mqtt_tls_cert else None,
                       keyfile=str(s.mqtt_tls_key) if s.mqtt_tls_key else None)
    client.on_connect, client.on_publish, client.on_disconnect = on_connect, on_publish, on_disconnect
    who = f"as {s.mqtt_username!r}" if s.mqtt_username else "anonymously"
    try:
        client.connect(s.mqtt_host, s.port, keepalive=30, clean_start=True)
        client.loop_start()
        if not connected.wait(ACK_TIMEOUT_S) or "connect" not in result:
            if not s.mqtt_tls_ca and _speaks_tls(s.mqtt_host, s.port):
                return [Check(FAIL, "broker login", f"{s.mqtt_host}:{s.port} is a TLS listener and no "
                                                    "ROOMPULSE_MQTT_TLS_CA is set",
                              "set ROOMPULSE_MQTT_TLS_CA to the CA file of the broker's certificate, or use the "
                              "broker's plain port (usually 1883)")]
            what = "closed the connection" if "closed" in result else f"sent no CONNACK within {ACK_TIMEOUT_S:.0f} s"
            return [Check(FAIL, "broker login", f"{s.mqtt_host}:{s.port} {what}",
                          "check that the port is an MQTT listener (ROOMPULSE_MQTT_PORT) and the broker's log")]
        code = result["connect"]
        if code.is_failure:
            auth = code.value in (134, 135)
            return [Check(FAIL, "broker login", f"the broker refused {who}: {code}"
                          + (" (not authorised)" if auth else ""),
                          "check ROOMPULSE_MQTT_USERNAME and the password (ROOMPULSE_MQTT_PASSWORD, "
                          "ROOMPULSE_MQTT_PASSWORD_FILE or the mqtt_password credential)" if auth
                          else "see the broker's log")]
        checks = [Check(OK, "broker login", f"accepted {who} (client id {client_id})")]
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = DOCTOR_EXPIRY_S
        topic = f"{s.prefix}/{DOCTOR_TOPIC}"
        began = time.monotonic()
        from device.contract import check
        from device.payloads import DOCTOR

        client.publish(topic, check(DOCTOR).to_json(), qos=1, retain=False, properties=props)
        if not published.wait(ACK_TIMEOUT_S):
            return checks + [Check(FAIL, "broker publish", f"no PUBACK on {topic} within {ACK_TIMEOUT_S:.0f} s",
                                   "see the broker's log")]
        code = result["publish"]
        if code.is_failure:
            return checks + [Check(FAIL, "broker publish", f"{topic}: {code}",
                                   f"allow this user to publish to {s.prefix}/# in the broker's ACL")]
        return checks + [Check(OK, "broker publish", f"QoS 1 message on {topic} acknowledged in "
                                                     f"{(time.monotonic() - began) * 1000:.0f} ms")]
    except (OSError, ssl.SSLError) as exc:
        from device.publisher import describe_failure

        return [Check(FAIL, "broker login", describe_failure(exc), "see the lines above")]
    finally:
        client.disconnect()
        client.loop_stop()


def check_clock() -> Check:
    """Whether systemd-timesyncd has synchronised the clock (a warning otherwise)."""
    from device.clock import TIMESYNC_FLAG, clock_synchronized

    if clock_synchronized():
        return Check(OK, "clock", "synchronised (systemd-timesyncd)")
    return Check(WARN, "clock", f"not known to be synchronised ({TIMESYNC_FLAG} absent): payload times may be off",
                 "a Pi has no real-time clock and syncs after boot; check 'timedatectl' and the network "
                 "(with chrony or ntpd this always shows)")


def run_doctor(env_file: Path | None, out: TextIO, overrides: dict | None = None) -> int:
    """Run every check and print one line each, then a count.

    Args:
        env_file: as ``--env-file`` (None: the default file when it exists).
        out: where the lines go.
        overrides: field values that win over the environment (``--source``).

    Returns:
        0 when nothing FAILs, 1 when something does, 78 when the configuration is invalid.
    """
    from device.config import env_file_in_force, load_settings, unknown_variables

    checks: list[Check] = []

    def emit(new: list[Check] | Check) -> None:
        for check in new if isinstance(new, list) else [new]:
            checks.append(check)
            print(check.line(), file=out, flush=True)

    try:
        used = env_file_in_force(env_file)
    except ConfigError:
        emit(Check(FAIL, "env file", f"{env_file} does not exist", "give the path of the env file"))
        return EX_CONFIG
    emit(check_env_file(used))
    try:
        settings = load_settings(env_file, **(overrides or {}))
    except ConfigError as exc:
        emit(Check(FAIL, "configuration", str(exc).replace("invalid configuration:\n  ", "").replace("\n  ", "; "),
                   "correct the variables named"))
        return EX_CONFIG
    emit(Check(OK, "configuration", "every variable valid"))
    for name in unknown_variables(used):
        emit(Check(WARN, "configuration", f"{name} is not a RoomPulse setting and is ignored", "correct the name"))
    emit(check_values(settings))
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the lines below say it; no log lines in between
    try:
        model_checks, _ = check_model(settings)
        emit(model_checks)
        emit(check_source(settings))
        emit(check_state(settings))
        emit(check_broker(settings))
        emit(check_clock())
    finally:
        logging.disable(quiet)
    counts = {status: sum(c.status == status for c in checks) for status in (OK, WARN, FAIL)}
    print(f"doctor: {counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL"
          + (" -- the unit can run" if not counts[FAIL] else " -- fix the FAIL lines, then run the doctor again"),
          file=out, flush=True)
    return 1 if counts[FAIL] else 0
