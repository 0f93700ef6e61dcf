"""MQTT ingest: subscribes to every unit under the topic root and stores what they publish.

Topics (DESIGN.md, "MQTT contract"), each subscribed with QoS 1 under
``<topic_root>/+/``: ``engagement`` (windows, validated with
:class:`device.payloads.Engagement`), ``availability``, ``status`` and ``paused`` (retained
states, sent again by the broker on every subscription).

Nothing is lost across a restart of the dashboard while the broker keeps its session:

- a fixed client id, MQTT v5 ``clean_start=False`` and a session expiry
  (``ROOMPULSE_DASHBOARD_SESSION_EXPIRY_S``): the broker queues QoS 1 windows while the
  dashboard is away (mosquitto: at most ``max_queued_messages`` per client, 1000 by default;
  raise it for a large fleet);
- manual acknowledgements: paho's network thread only validates a message and queues it; the
  writer thread commits a batch to SQLite and only then sends the PUBACKs, in the order the
  messages came. A crash before the commit means no PUBACK, so the broker sends those again;
  the store ignores what it already has (key ``device_id, seq, window_start``).

One bad message never holds back the others: a message that cannot be parsed or stored
because of what it holds (not JSON, outside the payload model's bounds, a window whose
``device_id`` is not the one in its topic, a row SQLite refuses) is counted in
``invalid_messages_total``, logged (one WARNING line, topic and payload cut to 200
characters, repeats rate-limited by :class:`device.logs.RateLimit`) and acknowledged. Only a
failure of the store itself (disk full, a locked or read-only file) leaves the batch
unacknowledged, for the broker to send again.
"""

from __future__ import annotations

import logging
import queue
import re
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device.dashboard.fleet import Fleet, Room
from device.dashboard.settings import BrokerSettings, DashboardSettings
from device.dashboard.store import Store, Window
from device.logs import clip
from device.payloads import Engagement

log = logging.getLogger(__name__)

QOS = 1
LEAVES = ("engagement", "availability", "status", "paused")
BATCH_MAX = 2000  # messages committed in one transaction at most
RECEIVE_MAXIMUM = 1000  # unacknowledged QoS 1 messages the broker may send at once (MQTT v5 Receive Maximum)
PRUNE_EVERY_S = 3600.0
# The service's ROOMPULSE_DEVICE_ID pattern (device/config.py). Anything else (a payload made by
# another publisher) is dropped: ids go into URLs, file names and CSV cells.
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What a message can raise by its content while it is parsed (pydantic's ValidationError is a
# ValueError; RecursionError, UnicodeError and OverflowError are kept for defence in depth).
MESSAGE_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, UnicodeError)
# What SQLite raises for a row it cannot take (an integer beyond 64 bits, a wrong type). A full
# disk, a locked or read-only file raise sqlite3.OperationalError: not listed, so not the message's fault.
ROW_ERRORS = (OverflowError, sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError)


@dataclass(frozen=True)
class Message:
    """One received message, as the network thread hands it to the writer thread.

    ``generation`` counts connections: a PUBACK is only sent on the connection its message
    came on (after a reconnect the broker sends the message again and it is acknowledged then).
    """

    generation: int
    mid: int
    qos: int
    device_id: str
    leaf: str
    payload: bytes


@dataclass
class Counters:
    """Ingest figures for ``/metrics``: windows stored, redeliveries ignored, invalid payloads."""

    stored: int = 0
    duplicates: int = 0
    invalid: int = 0
    connected: bool = False


def commit(store: Store, parsed: list[tuple[Message, Window]]) -> tuple[list[Window], int, list[tuple[Message, str]]]:
    """Store the windows in one transaction; ``(windows committed, how many were new,
    [(message, reason)] of the rows SQLite refused)``. When SQLite refuses a row
    (:data:`ROW_ERRORS`) the windows are committed one by one, so only that message is dropped.

    Raises:
        sqlite3.Error, OSError: the store itself failed (disk full, a locked or read-only file).
    """
    if not parsed:
        return [], 0, []
    try:
        return [w for _, w in parsed], store.add(w for _, w in parsed), []
    except ROW_ERRORS:
        pass
    windows, new, refused = [], 0, []
    for m, w in parsed:
        try:
            new += store.add([w])
        except ROW_ERRORS as exc:
            refused.append((m, reason(exc)))
        else:
            windows.append(w)
    return windows, new, refused


class StatusState(BaseModel):
    """The one field of ``<prefix>/status`` the dashboard reads (:class:`device.payloads.Status`
    has the whole schema; other fields are ignored here)."""

    model_config = ConfigDict(extra="ignore")

    state: str | None = Field(None, max_length=64, description="what the unit is doing, e.g. running, paused")


def reason(exc: BaseException) -> str:
    """Why a message was refused, one short line: a pydantic error as ``field: message``."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        return clip(f"{where}: {first['msg']}{more}")
    text = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    return clip((text.splitlines() or [""])[0])


class Ingest:
    """The dashboard's MQTT session and writer thread.

    Args:
        broker, dashboard: settings (:mod:`device.dashboard.settings`).
        store: the history the windows go to.
        fleet: the units' live state, updated after each commit.
        on_change: called from the writer thread after each commit with the rooms whose tile
            changed and the device ids that got a new window (late ones included); must not block.
    """

    def __init__(self, broker: BrokerSettings, dashboard: DashboardSettings, store: Store, fleet: Fleet,
                 on_change: Callable[[list[Room], set[str]], None] = lambda rooms, ids: None):
        self.broker = broker
        self.dashboard = dashboard
        self.store = store
        self.fleet = fleet
        self.on_change = on_change
        self.counters = Counters()
        self._root = dashboard.topic_root.rstrip("/")
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._generation = 0
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="dashboard-writer", daemon=True)
        self.client = self._new_client()

    def _new_client(self) -> mqtt.Client:
        b = self.broker
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.dashboard.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if b.mqtt_username:
            client.username_pw_set(b.mqtt_username, b.password())
        if b.mqtt_tls_ca:
            # tls_set verifies the chain and the host name by default, as the service does.
            client.tls_set(ca_certs=str(b.mqtt_tls_ca), certfile=str(b.mqtt_tls_cert) if b.mqtt_tls_cert else None,
                           keyfile=str(b.mqtt_tls_key) if b.mqtt_tls_key else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=int(b.mqtt_reconnect_max_s))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Start the writer thread and connect (in the background; retried with backoff)."""
        self._writer.start()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.dashboard.session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect_async(self.broker.mqtt_host, self.broker.port, keepalive=30, clean_start=False,
                                  properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect (what is queued but not committed is sent again by the broker next time)
        and stop the writer after it has committed what it holds."""
        self._stop.set()
        self._queue.put(None)
        self._writer.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    # --- network thread: thin callbacks ---

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the dashboard: %s", self.broker.mqtt_host, self.broker.port, reason_code)
            return
        self._generation += 1
        self.counters.connected = True
        log.info("connected to %s:%d (session %s)", self.broker.mqtt_host, self.broker.port,
                 "resumed" if flags.session_present else "new")
        client.subscribe([(f"{self._root}/+/{leaf}", SubscribeOptions(qos=QOS)) for leaf in LEAVES])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.counters.connected = False
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        rest = msg.topic[len(self._root) + 1:] if msg.topic.startswith(self._root + "/") else ""
        device_id, _, leaf = rest.rpartition("/")
        self._queue.put(Message(self._generation, msg.mid, msg.qos, device_id, leaf, msg.payload))

    # --- writer thread ---

    def _write_loop(self) -> None:
        last_prune = 0.0
        while True:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                first = ...
            batch = [] if first is ... else [first]
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in batch
            batch = [m for m in batch if m is not None]
            if batch:
                try:
                    self._handle(batch)
                except Exception:  # a full disk, a locked file: no PUBACK, the broker resends later
                    log.exception("could not store %d message(s); they stay unacknowledged", len(batch))
            if time.monotonic() - last_prune > PRUNE_EVERY_S:
                last_prune = time.monotonic()
                try:
                    pruned = self.store.prune()
                    if pruned:
                        log.info("retention: deleted %d window(s)", pruned)
                except Exception:
                    log.exception("retention pruning failed")
            if done or (self._stop.is_set() and self._queue.empty()):
                return

    def _handle(self, batch: list[Message]) -> None:
        """Commit a batch, update the live state, acknowledge in arrival order, notify.

        Raises:
            sqlite3.Error, OSError: the store itself failed; nothing is acknowledged or counted.
        """
        parsed: list[tuple[Message, Window]] = []
        invalid: list[tuple[Message, str]] = []
        for m in batch:
            if m.leaf == "engagement":
                try:
                    parsed.append((m, self._window(m)))
                except MESSAGE_ERRORS as exc:
                    invalid.append((m, reason(exc)))
        windows, new, refused = commit(self.store, parsed)
        invalid += refused
        changed: dict[str, Room] = {}
        for w in windows:
            room = self.fleet.window(w)
            if room is not None:
                changed[w.device_id] = room
        for m in batch:
            if m.leaf != "engagement" and DEVICE_ID.fullmatch(m.device_id):
                try:
                    room = self._state(m)
                except MESSAGE_ERRORS as exc:
                    invalid.append((m, reason(exc)))
                    continue
                if room is not None:
                    changed[m.device_id] = room
        self.counters.stored += new
        self.counters.duplicates += len(windows) - new
        self.counters.invalid += len(invalid)
        for m, why in invalid:
            text = m.payload.decode("utf-8", "replace")
            log.warning("invalid message on %s dropped: %s; payload (%d bytes): %r",
                        clip(f"{self._root}/{m.device_id}/{m.leaf}"), why, len(m.payload), clip(text))
        for m in batch:
            if m.qos and m.generation == self._generation:
                self.client.ack(m.mid, m.qos)
        if changed or windows:
            self.on_change(list(changed.values()), {w.device_id for w in windows})

    def _window(self, m: Message) -> Window:
        """The window an engagement message carries.

        Raises:
            ValueError: (pydantic's ValidationError included) not a ``roompulse.engagement/1``
                payload within its bounds, a device id that is not a RoomPulse one, or a
                ``device_id`` other than the topic's device level (``<root>/<device_id>/engagement``).
        """
        payload = Engagement.model_validate_json(m.payload)
        if not DEVICE_ID.fullmatch(payload.device_id):
            raise ValueError(f"device_id {clip(payload.device_id, 80)!r} is not a RoomPulse device id")
        if payload.device_id != m.device_id:
            raise ValueError(f"device_id {payload.device_id!r} is not the device of the topic it came on")
        return Window.from_payload(payload)

    def _state(self, m: Message) -> Room | None:
        """Apply a retained state message (availability, paused, status); ``None`` when it
        changes nothing (an unknown word).

        Raises:
            ValueError: a status that is not a JSON object with a string ``state``.
        """
        text = m.payload.decode("utf-8", "replace").strip()
        if m.leaf == "availability" and text in ("online", "offline"):
            return self.fleet.availability(m.device_id, text)
        if m.leaf == "paused" and text in ("ON", "OFF"):
            return self.fleet.paused(m.device_id, text == "ON")
        if m.leaf == "status":
            if not text:  # a cleared retained status
                return self.fleet.status(m.device_id, None)
            return self.fleet.status(m.device_id, StatusState.model_validate_json(m.payload).state)
        return None
