"""The publisher: owns the MQTT session and the durable outbox; the capture loop only hands it payloads.

Topics (DESIGN.md): ``<prefix>/availability`` retained ``online``/``offline`` (``offline`` is
the Last Will), ``<prefix>/engagement`` QoS 1 not retained, ``<prefix>/status`` and
``<prefix>/paused`` QoS 1 retained, commands on ``<prefix>/paused/set``; Home Assistant
discovery on ``<ha_prefix>/device/roompulse_<device_id>/config`` (re-sent when Home
Assistant publishes ``online`` on ``<ha_prefix>/status``).

Delivery: :meth:`Publisher.submit` commits the window to the :class:`~device.outbox.Outbox`
(SQLite) and prints it on stdout; that is all the capture loop waits for (a local disk
write, never the network). One session thread owns the paho-mqtt client and drives its
network loop itself (``client.loop``), so paho is only ever called from that thread:

- it connects (MQTT v5, TLS with hostname verification when a CA is set) and, after any
  failure, retries with exponential backoff from 1 s to ``ROOMPULSE_MQTT_RECONNECT_MAX_S``,
  logging why in one line that never holds a secret;
- each connection is a fresh client, so nothing paho kept in memory is resent behind our
  back: the outbox is replayed from its oldest row in ``seq`` order, at most ``WINDOW``
  messages in flight, and a row is deleted only on its PUBACK;
- retained states (availability, discovery, paused, status) are kept as latest values and
  sent on (re)connect and on change; status is refreshed every ``ROOMPULSE_STATUS_INTERVAL_S``.

QoS 1 is at-least-once: a window whose PUBACK was lost (broker or device restart) is sent
again, with the same ``seq``; consumers drop a ``seq`` they have already seen.
With no broker configured the payloads are only printed and nothing is queued.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TextIO

import paho.mqtt.client as mqtt
from pydantic import BaseModel
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.config import Settings
from device.contract import check
from device.discovery import discovery, discovery_topic
from device.outbox import Outbox
from device.payloads import OFFLINE, ONLINE, PAUSED_OFF, PAUSED_ON, Engagement, Status, utc_iso
from device.trouble import Trouble

log = logging.getLogger(__name__)

QOS = 1
WINDOW = 16  # engagement messages in flight at once (paho's own default limit is 20)
LOOP_S = 0.05  # network loop tick: the longest a new window waits before it is handed to paho
CONNACK_TIMEOUT_S = 10.0
# Largest MQTT packet the broker may send us: commands (ON/OFF), our own retained status and
# Home Assistant's "online" are a few hundred bytes.
MAX_INCOMING_BYTES = 65536
SESSION_TAKEN_OVER = 142  # MQTT v5 DISCONNECT reason 0x8E: another client connected with our client id
# mosquitto 2.0 drops the older of two clients with the same id without that DISCONNECT: it
# shows as connections accepted and lost again within seconds, over and over, which a broker
# refusing something we send looks like too. Such short sessions are logged (with both
# causes) and not followed by a reconnect at 1 s: the backoff keeps doubling.
# The certain sign of a second unit with our device_id is a status on our own status topic
# that we did not send, made after we started and not saying that unit stopped (retained or
# live); with the DISCONNECT above, that makes a clash (status `clash`, ERROR, STATUS=).
SHORT_SESSION_S = 5.0
SHORT_SESSIONS_SUSPECT = 5
CLASH_HOLD_S = 300.0  # the clash flag stays this long after the last sign of it
MAINTAIN_EVERY_S = 1.0
# Trouble (STATUS= and a journal line, device.trouble): the broker has acknowledged nothing for
# TROUBLE_WINDOWS windows, at most TROUBLE_MAX_S seconds, while windows wait or no connection holds.
TROUBLE_WINDOWS = 3
TROUBLE_MAX_S = 180.0


def describe_failure(exc: BaseException, tls: bool = False, port: int | None = None) -> str:
    """One line, in the technician's words, saying why a connection attempt failed (socket/TLS
    errors never carry credentials).

    Args:
        exc: what ``connect`` raised.
        tls: True when ``ROOMPULSE_MQTT_TLS_CA`` is set (a reset during the handshake then means
            the port speaks plain MQTT).
        port: the broker port tried, for the message.
    """
    at = f"port {port}" if port else "that port"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate check failed ({exc.verify_message}): check ROOMPULSE_MQTT_TLS_CA and that "
                "ROOMPULSE_MQTT_HOST is a name the broker's certificate is issued for")
    if tls and (isinstance(exc, (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError))
                or "WRONG_VERSION_NUMBER" in str(getattr(exc, "reason", "") or "")):
        # A plain MQTT listener reads the TLS ClientHello as a malformed packet and drops the connection.
        return (f"TLS handshake failed: the port is not a TLS listener ({at} speaks plain MQTT, "
                f"{type(exc).__name__}): set ROOMPULSE_MQTT_PORT to the broker's TLS port (usually 8883) "
                "or remove ROOMPULSE_MQTT_TLS_CA")
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake failed ({exc.reason or exc}): check the broker's TLS listener and "
                "ROOMPULSE_MQTT_TLS_* files")
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: nothing listens on {at} (is the broker running? is ROOMPULSE_MQTT_PORT right?)"
    if isinstance(exc, socket.gaierror):
        return "broker name does not resolve (check ROOMPULSE_MQTT_HOST and the unit's DNS)"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "no answer from the broker (timed out: a firewall, or the wrong host?)"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "the broker cannot be reached (no route to it: is the unit's network up?)"
    return f"{type(exc).__name__}: {exc}"


def connect_properties() -> Properties:
    """MQTT v5 CONNECT properties: Maximum Packet Size :data:`MAX_INCOMING_BYTES`, so the broker
    drops (never sends us) a larger message on a topic we subscribe to: a 40 MB publish on
    ``paused/set`` took the unit past its 512 MB MemoryMax (MQTT 5.0 spec, 3.1.2.11.4)."""
    properties = Properties(PacketTypes.CONNECT)
    properties.MaximumPacketSize = MAX_INCOMING_BYTES
    return properties


def describe_refusal(reason_code) -> str:
    """One line for a CONNACK refusal (the broker answered and said no), in the technician's words."""
    value = getattr(reason_code, "value", reason_code)
    login = {134: "bad user name or password", 135: "not authorised", 138: "this client is banned"}
    if value in (134, 135):
        return (f"broker refused the login: {login[value]} (MQTT reason {value} {reason_code}): "
                "check ROOMPULSE_MQTT_USERNAME and the password")
    if value in login:
        return f"broker refused the login: {login[value]} (MQTT reason {value} {reason_code})"
    if value == 133:
        return (f"broker refused the client id (MQTT reason 133 {reason_code}): check ROOMPULSE_MQTT_CLIENT_ID "
                "and ROOMPULSE_DEVICE_ID")
    return f"the broker refused the connection: {reason_code} (MQTT reason {value})"


def lasting(exc: BaseException, tls: bool = False) -> bool:
    """True when retrying will not cure the failure by itself (a certificate or TLS mismatch):
    it is shown at once in ``STATUS=``, not after the broker's silence has lasted a few windows."""
    return isinstance(exc, ssl.SSLError) or (tls and isinstance(exc, ConnectionResetError))


class Publisher:
    """Prints engagement payloads and, when a broker is configured, delivers everything.

    Args:
        settings: broker, credentials, TLS files, topic prefix, device id, outbox bounds.
        out: where engagement JSON lines are printed (stdout by default).
        on_pause: called from the session thread with True/False when ``ON``/``OFF``
            arrives on ``<prefix>/paused/set``.

    Raises:
        StateError: the outbox database cannot be used.
        ConfigError: the password file cannot be read.
    """

    def __init__(self, settings: Settings, out: TextIO | None = None,
                 on_pause: Callable[[bool], None] | None = None):
        self.settings = settings
        self.out = out or sys.stdout
        self.prefix = settings.prefix
        self.on_pause = on_pause
        self.enabled = bool(settings.mqtt_host)
        self.outbox = Outbox(settings.state_dir, settings.outbox_max_age_s, settings.outbox_max_count)
        self._password = settings.password() if self.enabled and settings.mqtt_username else None
        self._lock = threading.Lock()  # guards _retained/_dirty/_status; never held while calling paho
        self._retained: dict[str, str] = {self.topic("availability"): check(ONLINE).to_json()}
        if settings.ha_discovery:
            self._retained[discovery_topic(settings)] = check(discovery(settings)).to_json()
        self._dirty: set[str] = set()
        self._status: Status | None = None
        self._last_publish: str | None = None
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        # Per connection, touched only by the session thread:
        self._inflight: dict[int, int] = {}  # paho mid -> seq
        self._handed = -1  # highest seq handed to the current connection
        self._accepted: bool | None = None
        self._failure: str | None = None
        self._short_sessions = 0
        self._refused: str | None = None  # why the broker refused a window, in the current connection attempt
        self._offline_mid: int | None = None
        self._offline_acked = False
        self._next_maintain = 0.0
        self._next_status = 0.0
        self.failure: BaseException | None = None  # set when the session thread died of an error
        self._started = datetime.now(timezone.utc).replace(microsecond=0)
        self._sent_status: deque[str] = deque(maxlen=64)  # our own status payloads, to tell others' apart
        self._clash_until = 0.0
        self.clash_reason: str | None = None
        # Trouble: written by the session thread, read by the service (whole values, no lock needed).
        self.trouble_after_s = min(TROUBLE_WINDOWS * settings.window_s, TROUBLE_MAX_S)
        self._ok_at = time.monotonic()  # the broker's last CONNACK accepting us or PUBACK, monotonic s
        self._problem: tuple[str, float, bool] | None = None  # (what fails, since (monotonic s), shown at once)

    # ---- what the service calls (any thread; never waits on the network) ----

    def topic(self, leaf: str) -> str:
        """``<prefix>/<leaf>``."""
        return f"{self.prefix}/{leaf}"

    @property
    def depth(self) -> int:
        """Windows in the outbox, not yet acknowledged by the broker."""
        return self.outbox.depth if self.enabled else 0

    @property
    def dropped(self) -> int:
        """Windows dropped by the outbox bounds or expiry (persistent)."""
        return self.outbox.dropped

    @property
    def sequence_id(self) -> str:
        """The state file's ``sequence_id`` that engagement payloads carry (:mod:`device.state`)."""
        return self.outbox.sequence_id

    @property
    def disk_full(self) -> bool:
        """True while windows cannot be written to the state disk (they are kept in memory)."""
        return self.outbox.disk_full

    @property
    def unstored(self) -> int:
        """Windows that could not be written to the state disk since start."""
        return self.outbox.unstored

    @property
    def clash(self) -> bool:
        """True while another unit seems to use this unit's device_id or client id
        (:attr:`clash_reason` says why; cleared ``CLASH_HOLD_S`` after the last sign)."""
        return time.monotonic() < self._clash_until

    @property
    def connected(self) -> bool:
        """True while a broker connection is accepted."""
        return self._connected.is_set()

    @property
    def trouble(self) -> Trouble | None:
        """Why nothing reaches the broker, or None while it acknowledges what it is sent.

        A failure shows once the broker has acknowledged nothing (no accepted CONNACK, no
        PUBACK) for :attr:`trouble_after_s` (``TROUBLE_WINDOWS`` windows, at most
        ``TROUBLE_MAX_S`` seconds); a refusal that retrying will not cure (the broker refused
        the login, a TLS mismatch) shows at once. A connection that holds but acknowledges
        none of the waiting windows for that long shows too.
        """
        if not self.enabled:
            return None
        problem, quiet = self._problem, time.monotonic() - self._ok_at
        if problem is not None:
            what, since, at_once = problem
            return Trouble(what, since) if at_once or quiet > self.trouble_after_s else None
        if self.connected and quiet > self.trouble_after_s and self.outbox.depth:
            return Trouble("the broker accepts the connection but acknowledges none of the windows sent",
                           self._ok_at)
        return None

    def start(self) -> None:
        """Start the session thread (connects in the background); returns at once."""
        if not self.enabled:
            log.info("no broker configured (ROOMPULSE_MQTT_HOST empty): printing payloads to stdout only")
            return
        self._ok_at = time.monotonic()  # trouble counts from here until the broker first answers
        depth = self.outbox.depth
        if depth:
            log.info("%d window(s) queued in the outbox from an earlier run: sending them first", depth)
        self._thread = threading.Thread(target=self._run_guarded, name="mqtt-session", daemon=True)
        self._thread.start()

    @property
    def dead(self) -> bool:
        """True when the session thread ended of an unexpected error: nothing more can be
        delivered in this process (the service exits non-zero so systemd restarts it)."""
        return self.failure is not None

    def submit(self, make: Callable[[int], Engagement]) -> Engagement:
        """Give the next window a ``seq``, commit it to the outbox, print it; returns the payload.

        Args:
            make: ``seq -> Engagement``, called once inside the outbox transaction.
        """
        built: list[Engagement] = []

        def _json(seq: int) -> str:
            built.append(check(make(seq)))
            return built[0].to_json()

        _, line = self.outbox.add(_json, keep=self.enabled, topic=self.topic("engagement"))
        print(line, file=self.out, flush=True)
        return built[0]

    def publish_status(self, status: Status) -> None:
        """Set the retained status (sent now if connected, else on connect; refreshed periodically)."""
        with self._lock:
            self._status = status
        self._refresh_status()

    def publish_paused(self, paused: bool) -> None:
        """Set the retained ``<prefix>/paused`` state (``ON``/``OFF``)."""
        self._set_retained(self.topic("paused"), PAUSED_ON if paused else PAUSED_OFF)

    def close(self, timeout: float = 10.0) -> int:
        """Send what the outbox holds for up to ``timeout`` s, publish ``offline``, disconnect.

        What is not acknowledged stays in the outbox for the next start.

        Returns:
            How many windows are still in the outbox.
        """
        began = time.monotonic()
        if self._thread is not None:
            self._deadline = began + timeout
            self._closing.set()
            self._thread.join(timeout + CONNACK_TIMEOUT_S + 5)
        left = self.depth
        self.outbox.close()
        if left:  # the time it really waited: a stop signal may have cut the wait (hurry)
            log.warning("%d window(s) not acknowledged by the broker within %.0f s: kept in the outbox "
                        "for the next start", left, time.monotonic() - began)
        return left

    def hurry(self, seconds: float) -> None:
        """A stop was asked while :meth:`close` flushes: give it at most ``seconds`` more."""
        if self._closing.is_set():
            self._deadline = min(self._deadline, time.monotonic() + seconds)

    # ---- internals ----

    def _set_retained(self, topic: str, message: BaseModel, force: bool = False) -> None:
        """Keep ``message`` as the latest value of ``topic``; send it if it changed (or ``force``).

        Raises:
            ContractError: ``message`` is not a contract model (see :mod:`device.contract`).
        """
        payload = check(message).to_json()
        if not self.enabled:
            return
        with self._lock:
            if force or self._retained.get(topic) != payload:
                self._retained[topic] = payload
                self._dirty.add(topic)

    def _refresh_status(self) -> None:
        """Stamp the latest status with the delivery figures and the time, and queue it."""
        with self._lock:
            base = self._status
        if base is None or not self.enabled:
            return
        status = Status.model_validate({
            **base.model_dump(by_alias=True),
            "outbox_depth": self.outbox.depth, "dropped": self.outbox.dropped,
            "disk_full": self.outbox.disk_full, "unstored": self.outbox.unstored, "clash": self.clash,
            "last_publish": self._last_publish, "timestamp": utc_iso(datetime.now(timezone.utc)),
        })
        self._set_retained(self.topic("status"), status, force=True)
        self._next_status = time.monotonic() + self.settings.status_interval_s

    def _done(self) -> bool:
        """Closing and either everything is acknowledged or the flush deadline has passed."""
        return self._closing.is_set() and (time.monotonic() >= self._deadline or self.outbox.depth == 0)

    def _maintain(self) -> None:
        now = time.monotonic()
        if now >= self._next_status:
            self._refresh_status()
        if now < self._next_maintain:
            return
        self._next_maintain = now + MAINTAIN_EVERY_S
        dropped = self.outbox.trim(keep_from=self._handed)
        if dropped:
            log.warning("outbox bound reached: dropped %d oldest window(s) (ROOMPULSE_OUTBOX_MAX_AGE_S=%g, "
                        "ROOMPULSE_OUTBOX_MAX_COUNT=%d)", dropped, self.settings.outbox_max_age_s,
                        self.settings.outbox_max_count)
            self._refresh_status()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._done():
            if self._closing.is_set() and self._refused:
                return  # the broker answers (it refused a window): reconnect at once to say offline
            self._maintain()
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def _run_guarded(self) -> None:
        """The session thread: :meth:`_run`, with any error it or a paho callback raises
        logged with its traceback and kept in :attr:`failure` for the service to act on."""
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - the service must learn of any death
            self.failure = exc
            self._connected.clear()
            log.critical("MQTT session thread died (%s: %s): nothing can be delivered any more",
                         type(exc).__name__, exc, exc_info=True)

    def _run(self) -> None:
        s = self.settings
        delay = 1.0
        while not self._done():
            client, failure, self._refused = None, None, None
            try:
                client = self._new_client()
                client.connect(s.mqtt_host, s.port, keepalive=30, clean_start=True, properties=connect_properties())
            except (OSError, ValueError) as exc:
                failure = describe_failure(exc, tls=bool(s.mqtt_tls_ca), port=s.port)
                self._short_sessions = 0
                self._failed(failure, at_once=lasting(exc, tls=bool(s.mqtt_tls_ca)))
            else:
                began = time.monotonic()
                if self._session(client) and self._refused:
                    failure = self._refused
                    self._failed(failure, at_once=True)
                elif self._accepted:
                    lasted = time.monotonic() - began
                    self._note_session(lasted)
                    if lasted >= SHORT_SESSION_S and not self.clash:
                        delay = 1.0  # a connection that held: reconnect at once; else keep backing off
                    if self._done():
                        break
                    self._failed("the connection to the broker was lost (reconnecting)")
                    log.warning("MQTT connection to %s:%d lost; reconnecting in %.0f s", s.mqtt_host, s.port, delay)
                else:
                    failure = self._failure or self._closed_early()
                    self._failed(failure, at_once=self._accepted is False)
            finally:
                sock = client.socket() if client is not None else None
                if sock is not None:
                    sock.close()
            if failure:
                if self._done():
                    break
                log.error("MQTT connection to %s:%d failed: %s; retrying in %.0f s", s.mqtt_host, s.port, failure, delay)
            self._sleep(delay)
            delay = min(delay * 2, s.mqtt_reconnect_max_s)

    def _closed_early(self) -> str:
        """Why a connection closed before any CONNACK: without TLS, the port may be a TLS listener."""
        if self.settings.mqtt_tls_ca:
            return "the connection closed before the broker accepted it"
        return ("the connection closed before the broker accepted it (is port "
                f"{self.settings.port} a TLS listener? then set ROOMPULSE_MQTT_TLS_CA)")

    def _fine(self) -> None:
        """The broker acknowledged something (CONNACK accepting us, a PUBACK): no trouble."""
        self._ok_at = time.monotonic()
        self._problem = None

    def _failed(self, what: str, at_once: bool = False) -> None:
        """A connection failed (``what``, technician's words); the trouble began at the first
        failure since the broker last acknowledged something. ``at_once``: show it without
        waiting (retrying will not cure it)."""
        previous = self._problem
        self._problem = (what, previous[1] if previous else time.monotonic(), at_once)

    def _clash(self, why: str) -> None:
        """A sign that another unit uses our device_id or client id: flag it (status, STATUS=) and
        say so in the journal (once per episode; the logging rate limit covers repeats)."""
        first = not self.clash
        self._clash_until = time.monotonic() + CLASH_HOLD_S
        self.clash_reason = why
        if first:
            log.error("CLASH: %s. Two units with the same ROOMPULSE_DEVICE_ID (or ROOMPULSE_MQTT_CLIENT_ID) take "
                      "the broker connection from each other and mix their seq on one topic: give every unit its "
                      "own. Reconnecting with backoff (up to ROOMPULSE_MQTT_RECONNECT_MAX_S=%g s)", why,
                      self.settings.mqtt_reconnect_max_s)
        self._refresh_status()

    def _note_session(self, lasted_s: float) -> None:
        """Count connections lost within seconds of being accepted and say so after a run of them."""
        if self._done():
            return
        self._short_sessions = self._short_sessions + 1 if lasted_s < SHORT_SESSION_S else 0
        if self._short_sessions == SHORT_SESSIONS_SUSPECT:
            log.error("the broker accepted and then closed the MQTT connection within %.0f s, %d times in a row: "
                      "another connection may be using client id %r (every unit needs its own ROOMPULSE_DEVICE_ID "
                      "or ROOMPULSE_MQTT_CLIENT_ID), or the broker refuses something this unit sends (its log says "
                      "which); backing off", SHORT_SESSION_S, SHORT_SESSIONS_SUSPECT, self.settings.client_id)

    def _new_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=mqtt.MQTTv5,
                             reconnect_on_failure=False)
        client.will_set(self.topic("availability"), OFFLINE.to_json(), qos=QOS, retain=True)
        if s.mqtt_username:
            client.username_pw_set(s.mqtt_username, self._password)
        if s.mqtt_tls_ca:
            # tls_set verifies the chain and the host name (check_hostname) by default.
            client.tls_set(ca_certs=str(s.mqtt_tls_ca),
                           certfile=str(s.mqtt_tls_cert) if s.mqtt_tls_cert else None,
                           keyfile=str(s.mqtt_tls_key) if s.mqtt_tls_key else None)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _session(self, client: mqtt.Client) -> bool:
        """Run one connection until it drops or the close is done; True when the broker accepted it."""
        self._inflight, self._handed, self._accepted, self._failure = {}, -1, None, None
        self._offline_mid, self._offline_acked = None, False
        connack_by = time.monotonic() + CONNACK_TIMEOUT_S
        offline_by = 0.0
        while True:
            rc = client.loop(timeout=LOOP_S)
            if rc != mqtt.MQTT_ERR_SUCCESS or self._accepted is False:
                break
            if self._refused and not self._closing.is_set():
                # End the session cleanly (no Last Will); reconnect with backoff, send again. While
                # closing, the session goes on instead, to publish the final status and offline.
                client.disconnect()
                client.loop(timeout=LOOP_S)
                break
            if self._accepted is None:
                if time.monotonic() > connack_by:
                    self._failure = f"the broker did not answer within {CONNACK_TIMEOUT_S:.0f} s"
                    break
                continue
            self._maintain()
            self._send_retained(client)
            self._pump(client)
            if self._done():
                if self._offline_mid is None:  # clean exit: final status, then offline; wait for its PUBACK
                    self._refresh_status()
                    self._send_retained(client)
                    info = client.publish(self.topic("availability"), OFFLINE.to_json(), qos=QOS, retain=True)
                    self._offline_mid, offline_by = info.mid, time.monotonic() + 2.0
                elif self._offline_acked or time.monotonic() > offline_by:
                    client.disconnect()
                    client.loop(timeout=LOOP_S)
                    break
        self._connected.clear()
        return bool(self._accepted)

    def _send_retained(self, client: mqtt.Client) -> None:
        with self._lock:
            todo = [(t, self._retained[t]) for t in self._retained if t in self._dirty]
            self._dirty.clear()
        for topic, payload in todo:  # not under self._lock: paho takes its own locks
            if topic == self.topic("status"):
                self._sent_status.append(payload)
            client.publish(topic, payload, qos=QOS, retain=True)

    def _pump(self, client: mqtt.Client) -> None:
        """Hand the next outbox rows, in ``seq`` order, to the connection (at most WINDOW in flight)."""
        room = WINDOW - len(self._inflight)
        if room <= 0:
            return
        expiry = self.settings.mqtt_message_expiry_s
        for row in self.outbox.after(self._handed, room):
            properties = None
            if expiry:
                left = int(expiry - (time.time() - row.created))
                if left < 1:
                    log.warning("window seq %d expired before it could be sent (ROOMPULSE_MQTT_MESSAGE_EXPIRY_S=%d): "
                                "dropped", row.seq, expiry)
                    self.outbox.drop(row.seq)
                    self._handed = row.seq
                    continue
                properties = Properties(PacketTypes.PUBLISH)
                properties.MessageExpiryInterval = left
            # The topic the window was made for: a backlog from before a ROOMPULSE_DEVICE_ID or
            # prefix change goes to the topic of the device_id in its payload.
            topic = row.topic or self.topic("engagement")
            info = client.publish(topic, row.payload, qos=QOS, properties=properties)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # connection lost; the row stays in the outbox for the next connection
            self._inflight[info.mid] = row.seq
            self._handed = row.seq

    def _foreign_status(self, text: str) -> None:
        """A status on our own status topic: ours, an earlier run's, or another unit's (a clash)."""
        if not text or text in self._sent_status:
            return
        try:
            other = json.loads(text)
            made = datetime.strptime(other["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except (ValueError, KeyError, TypeError):
            return
        if made > self._started and other.get("state") not in ("stopped", "finished"):
            self._clash(f"another unit publishes its status on {self.topic('status')} (state "
                        f"{other.get('state')!r} at {other['timestamp']}, after this one started)")

    # ---- paho callbacks: all run in the session thread, inside client.loop() ----

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        s = self.settings
        if reason_code.is_failure:
            self._failure = describe_refusal(reason_code)
            self._accepted = False
            return
        self._accepted = True
        self._fine()
        self._connected.set()
        log.info("connected to MQTT broker %s:%d as %s", s.mqtt_host, s.port, s.client_id)
        topics = [(self.topic("paused/set"), QOS), (self.topic("status"), QOS)]
        if s.ha_discovery:
            topics.append((f"{s.ha_prefix.rstrip('/')}/status", QOS))
        client.subscribe(topics)
        with self._lock:
            self._dirty.update(self._retained)
        self._refresh_status()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        if getattr(reason_code, "value", reason_code) == SESSION_TAKEN_OVER:
            self._clash(f"the broker gave client id {self.settings.client_id!r} to another connection "
                        "(session taken over)")
        elif reason_code != 0 and self._accepted:
            log.warning("MQTT connection lost (%s)", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if mid == self._offline_mid:
            self._offline_acked = True
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        if reason_code.is_failure:
            # Kept: a window leaves the outbox only when the broker acknowledges it (or by the
            # outbox bounds); an ACL put right later gets the backlog.
            log.error("MQTT broker refused window seq %d (%s): kept in the outbox and sent again after reconnecting",
                      seq, reason_code)
            self._refused = (f"the broker refuses the windows sent ({reason_code}): check its ACL and log for "
                             f"{self.topic('engagement')}")
            return
        self.outbox.ack(seq)
        self._fine()
        self._last_publish = utc_iso(datetime.now(timezone.utc))

    def _on_message(self, client, userdata, message):
        text = message.payload.decode("utf-8", "replace").strip()
        if message.topic == self.topic("status"):
            self._foreign_status(text)
        elif message.topic == self.topic("paused/set"):
            if message.retain:
                # A command kept by the broker (published with the retain flag) would act again at
                # every reconnect, even after a later OFF: commands act only when they are sent.
                log.warning("ignored a retained %r on %s: commands act only when sent, never from a retained "
                            "message; clear it with: mosquitto_pub -h BROKER -r -n -t %s", text[:20],
                            message.topic, message.topic)
            elif text.upper() not in ("ON", "OFF"):
                log.warning("ignored %r on %s: expected ON or OFF", text[:20], message.topic)
            elif self.on_pause is not None:
                self.on_pause(text.upper() == "ON")
        elif text == "online":  # Home Assistant (re)started: announce again
            log.info("Home Assistant is online: re-sending discovery")
            with self._lock:
                self._dirty.update(self._retained)
