"""What the dashboard knows about each unit right now: pure records, no I/O.

A unit is known by its ``device_id`` (the topic level after ``ROOMPULSE_DASHBOARD_TOPIC_ROOT``,
which is the device id under the units' default prefix ``roompulse/<device_id>``). Its state
on the page and on ``/metrics`` comes from the retained topics the unit publishes:

- ``offline``: ``<prefix>/availability`` is ``offline`` (a clean stop or the broker's Last Will);
- ``paused``: ``<prefix>/paused`` is ``ON`` or the status says ``paused``;
- ``camera_stalled``, ``starting``, ``finished``, ``stopped``: the status ``state``;
- ``online``: available and running; ``unknown``: nothing received yet but windows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from device.dashboard.store import Window

STATES = ("online", "offline", "paused", "camera_stalled", "starting", "finished", "stopped", "unknown")


@dataclass(frozen=True)
class Room:
    """One unit as last heard of. ``availability`` is ``online``/``offline``/``None``;
    ``status_state`` the status payload's ``state``; ``paused`` from ``<prefix>/paused``."""

    device_id: str
    availability: str | None = None
    status_state: str | None = None
    paused: bool = False
    latest: Window | None = None

    @property
    def state(self) -> str:
        """One of :data:`STATES`, the rule of the module docstring."""
        if self.availability == "offline":
            return "offline"
        if self.paused or self.status_state == "paused":
            return "paused"
        if self.status_state in ("camera_stalled", "starting", "finished", "stopped"):
            return self.status_state
        if self.availability == "online":
            return "online"
        return "unknown"

    def tile(self, now_s: float) -> dict:
        """The tile of the page and ``/api/rooms``: state, newest window's figures and age (seconds)."""
        w = self.latest
        return {
            "device_id": self.device_id,
            "state": self.state,
            "faces_present": w.faces_present if w else None,
            "engagement_score": w.engagement_score if w else None,
            "suppressed": w.suppressed if w else None,
            "window_end": w.window_end if w else None,
            "window_end_s": w.end_s if w else None,
            "age_s": round(max(0.0, now_s - w.end_s), 1) if w else None,
        }


@dataclass
class Fleet:
    """Every unit's :class:`Room`, updated by the ingest thread and read by the web server."""

    rooms: dict[str, Room] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _update(self, device_id: str, **changes) -> Room:
        with self._lock:
            room = replace(self.rooms.get(device_id) or Room(device_id), **changes)
            self.rooms[device_id] = room
            return room

    def window(self, w: Window) -> Room | None:
        """Record a stored window; a late one (older than the newest) leaves the tile as it is
        and returns ``None``."""
        with self._lock:
            room = self.rooms.get(w.device_id) or Room(w.device_id)
            if room.latest is not None and (w.end_s, w.seq) < (room.latest.end_s, room.latest.seq):
                self.rooms.setdefault(w.device_id, room)
                return None
            room = replace(room, latest=w)
            self.rooms[w.device_id] = room
            return room

    def availability(self, device_id: str, word: str) -> Room:
        return self._update(device_id, availability=word)

    def status(self, device_id: str, state: str | None) -> Room:
        return self._update(device_id, status_state=state)

    def paused(self, device_id: str, on: bool) -> Room:
        return self._update(device_id, paused=on)

    def snapshot(self) -> list[Room]:
        """Every room, sorted by device id."""
        with self._lock:
            return [self.rooms[k] for k in sorted(self.rooms)]

    def get(self, device_id: str) -> Room | None:
        with self._lock:
            return self.rooms.get(device_id)
