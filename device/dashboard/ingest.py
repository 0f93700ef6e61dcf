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
"""

from __future__ import annotations

import json
import logging
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from device.dashboard.fleet import Fleet, Room
from device.dashboard.settings import BrokerSettings, DashboardSettings
from device.dashboard.store import Store, Window
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
        """Commit a batch, update the live state, acknowledge in arrival order, notify."""
        windows: list[Window] = []
        for m in batch:
            if m.leaf == "engagement":
                try:
                    payload = Engagement.model_validate_json(m.payload)
                    if not DEVICE_ID.fullmatch(payload.device_id):
                        raise ValueError(f"device_id {payload.device_id[:80]!r} is not a RoomPulse device id")
                    windows.append(Window.from_payload(payload))
                except (ValidationError, ValueError) as exc:
                    self.counters.invalid += 1
                    log.warning("invalid engagement payload on %s/%s/engagement dropped: %s", self._root,
                                m.device_id, str(exc).splitlines()[0])
        new = self.store.add(windows) if windows else 0
        self.counters.stored += new
        self.counters.duplicates += len(windows) - new
        changed: dict[str, Room] = {}
        for w in windows:
            room = self.fleet.window(w)
            if room is not None:
                changed[w.device_id] = room
        for m in batch:
            if m.leaf != "engagement" and DEVICE_ID.fullmatch(m.device_id):
                room = self._state(m)
                if room is not None:
                    changed[m.device_id] = room
        for m in batch:
            if m.qos and m.generation == self._generation:
                self.client.ack(m.mid, m.qos)
        if changed or windows:
            self.on_change(list(changed.values()), {w.device_id for w in windows})

    def _state(self, m: Message) -> Room | None:
        text = m.payload.decode("utf-8", "replace").strip()
        if m.leaf == "availability" and text in ("online", "offline"):
            return self.fleet.availability(m.device_id, text)
        if m.leaf == "paused" and text in ("ON", "OFF"):
            return self.fleet.paused(m.device_id, text == "ON")
        if m.leaf == "status":
            if not text:  # a cleared retained status
                return self.fleet.status(m.device_id, None)
            try:
                return self.fleet.status(m.device_id, str(json.loads(text).get("state")))
            except (ValueError, AttributeError):
                self.counters.invalid += 1
        return None
