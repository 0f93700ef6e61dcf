"""A real paho subscriber for tests: records every message it receives."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt


class Recorder:
    """Subscribes to ``topic`` on a broker and keeps ``(topic, payload, retained)`` tuples."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "test-recorder"):
        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber could not subscribe")

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def on(self, topic: str) -> list[str]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def wait_for(self, topic: str, predicate, timeout: float = 30.0) -> list[str]:
        """Wait until ``predicate(payloads on topic)`` is true; returns those payloads."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            payloads = self.on(topic)
            if predicate(payloads):
                return payloads
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting on {topic}; got {self.on(topic)}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
