"""A real paho subscriber for tests: records every message it receives."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt


class Recorder:
    """Subscribes to ``topic`` on a broker and keeps ``(topic, payload, retained)`` tuples.

    Args:
        persistent: a persistent session (clean_session=False, QoS 1): what the broker queued
            while the recorder was away arrives after it reconnects (it reconnects by itself).
        username, password: log in (brokers that refuse anonymous clients).
    """

    def __init__(self, port: int, topic: str = "#", client_id: str = "test-recorder", persistent: bool = False,
                 username: str | None = None, password: str | None = None):
        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber could not subscribe")

    def seqs(self, topic: str) -> list[int]:
        """``seq`` of every engagement payload received on ``topic``, in arrival order."""
        return [json.loads(p)["seq"] for p in self.on(topic)]

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


def deliver(raw: list[int]) -> tuple[list[int], int]:
    """What a consumer application sees of a QoS 1 stream: a ``seq`` it has already seen is a
    redelivery and is dropped. Returns ``(delivered, redeliveries)``.

    Raises:
        AssertionError: a ``seq`` arrived out of order or one was skipped (a gap).
    """
    delivered: list[int] = []
    redeliveries = 0
    for seq in raw:
        if delivered and seq <= delivered[-1]:
            assert seq in delivered, f"seq {seq} arrived after {delivered[-1]} but was never seen before"
            redeliveries += 1
            continue
        assert not delivered or seq == delivered[-1] + 1, f"gap: {delivered[-1]} then {seq}"
        delivered.append(seq)
    return delivered, redeliveries


class ServiceProcess:
    """``python -m device run`` in the background, its stdout lines and stderr kept as they come."""

    def __init__(self, env: dict[str, str], *args: str, cwd=None):
        self.proc = subprocess.Popen([sys.executable, "-m", "device", "run", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True)]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.errors)

    def seqs(self) -> list[int]:
        return [json.loads(line)["seq"] for line in list(self.lines)]

    def wait_until(self, predicate, timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited ({self.proc.returncode}) waiting for {what}:\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.stderr[-3000:]}")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return rc
