"""The publisher: owns the MQTT session; the capture loop hands it finished payloads.

Topics (DESIGN.md): ``<prefix>/availability`` retained ``online``/``offline`` (``offline``
is the Last Will), ``<prefix>/engagement`` QoS 1 not retained, ``<prefix>/status`` QoS 1
retained. Every engagement payload is also printed as one JSON line on stdout; with no
broker configured that is all that happens (the embedded default).

paho-mqtt 2.x runs the network loop in its own thread (``loop_start``); :meth:`publish_*`
only queue a message and never wait on the network.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

import paho.mqtt.client as mqtt

from device.config import Settings
from device.payloads import Engagement, Status

log = logging.getLogger(__name__)

QOS = 1
ONLINE, OFFLINE = "online", "offline"


class Publisher:
    """Prints engagement payloads and, when a broker is configured, publishes everything.

    Args:
        settings: broker, credentials, TLS files, topic prefix, device id.
        out: where engagement JSON lines are printed (stdout by default).
    """

    def __init__(self, settings: Settings, out: TextIO | None = None):
        self.settings = settings
        self.out = out or sys.stdout
        self.prefix = settings.prefix
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self._early_acks: set[int] = set()
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None
        if settings.mqtt_host:
            self._client = self._make_client()

    @property
    def queue_depth(self) -> int:
        """Messages handed to the broker connection and not yet acknowledged."""
        with self._lock:
            return len(self._pending)

    def topic(self, leaf: str) -> str:
        return f"{self.prefix}/{leaf}"

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"roompulse-{s.device_id}", protocol=mqtt.MQTTv311
        )
        client.will_set(self.topic("availability"), OFFLINE, qos=QOS, retain=True)
        password = s.mqtt_password.get_secret_value() if s.mqtt_password else None
        if password is None and s.mqtt_password_file:
            password = s.mqtt_password_file.read_text().strip()
        if s.mqtt_username:
            client.username_pw_set(s.mqtt_username, password)
        if s.mqtt_tls_ca:
            client.tls_set(
                ca_certs=str(s.mqtt_tls_ca),
                certfile=str(s.mqtt_tls_cert) if s.mqtt_tls_cert else None,
                keyfile=str(s.mqtt_tls_key) if s.mqtt_tls_key else None,
            )
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._client is None:
            log.info("no broker configured (ROOMPULSE_MQTT_HOST empty): printing payloads to stdout only")
            return
        log.info("connecting to MQTT broker %s:%d", self.settings.mqtt_host, self.settings.port)
        self._client.connect_async(self.settings.mqtt_host, self.settings.port, keepalive=30)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the first connection; True when connected."""
        return self._client is None or self._connected.wait(timeout)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("MQTT broker refused the connection: %s", reason_code)
            return
        log.info("connected to MQTT broker %s:%d", self.settings.mqtt_host, self.settings.port)
        client.publish(self.topic("availability"), ONLINE, qos=QOS, retain=True)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        if reason_code != 0:
            log.warning("MQTT connection lost (%s); paho reconnects with backoff", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        # Runs in paho's thread while paho holds its own lock: never call into paho here.
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
            else:
                self._early_acks.add(mid)

    def _send(self, leaf: str, payload: str, retain: bool) -> None:
        if self._client is None:
            return
        # Not under self._lock: paho's publish takes paho's lock, and paho calls
        # _on_publish (which takes self._lock) while holding it.
        info = self._client.publish(self.topic(leaf), payload, qos=QOS, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.error("could not queue MQTT message on %s: %s", leaf, mqtt.error_string(info.rc))
            return
        # paho keeps QoS 1 messages and sends them once (re)connected.
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
            else:
                self._pending.add(info.mid)

    def publish_engagement(self, payload: Engagement) -> None:
        """Print the payload as one JSON line and queue it on ``<prefix>/engagement``."""
        line = payload.to_json()
        print(line, file=self.out, flush=True)
        self._send("engagement", line, retain=False)

    def publish_status(self, status: Status) -> None:
        """Queue the retained status (not printed: stdout carries engagement lines only)."""
        self._send("status", status.to_json(), retain=True)

    def close(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` s for acknowledgements, publish ``offline``, disconnect.

        Returns:
            How many messages were still unacknowledged.
        """
        if self._client is None:
            return 0
        deadline = time.monotonic() + timeout
        while self.queue_depth and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.queue_depth
        if self._connected.is_set():
            info = self._client.publish(self.topic("availability"), OFFLINE, qos=QOS, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        if left:
            log.warning("%d message(s) not acknowledged by the broker within %.0f s", left, timeout)
        return left
