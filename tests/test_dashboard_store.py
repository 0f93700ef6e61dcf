"""The dashboard's SQLite history on its own: de-duplication, late windows, retention, restarts."""

from __future__ import annotations

from datetime import timedelta

from dashboard_helpers import T0, window
from device.dashboard.fleet import Fleet
from device.dashboard.store import Store, Window


def w(seq: int, faces: int = 12, score: float | None = 0.5, device: str = "room-101", offset_s: int | None = None):
    start = T0 + timedelta(seconds=60 * (seq if offset_s is None else offset_s))
    return Window.from_payload(window(device, seq, start, 60, faces, score))


def test_redelivery_is_stored_once_and_late_window_lands_in_place(tmp_path):
    store = Store(tmp_path / "h.db", retention_s=1e9)
    assert store.add([w(0), w(1), w(2), w(5)]) == 4
    assert store.add([w(1), w(2)]) == 0  # QoS 1 redeliveries: same device_id, seq, window_start
    assert store.add([w(3), w(4, faces=3, score=None)]) == 2  # late, from the unit's outbox
    rows = store.between("room-101", 0, 2e9)
    assert [r.seq for r in rows] == [0, 1, 2, 3, 4, 5]
    assert (rows[4].suppressed, rows[4].engagement_score, rows[4].faces_present) == (True, None, 3)
    assert rows[3].end_s - rows[3].start_s == 60.0
    assert store.count() == 6


def test_new_sequence_after_lost_state_is_kept(tmp_path):
    store = Store(tmp_path / "h.db", retention_s=1e9)
    store.add([w(0), w(1)])
    # the unit lost its state file and counts from 0 again, an hour later: new windows, same seqs
    assert store.add([w(0, offset_s=60), w(1, offset_s=61)]) == 2
    assert [r.window_start for r in store.between("room-101", 0, 2e9)] == [
        "2026-11-30T08:00:00Z", "2026-11-30T08:01:00Z", "2026-11-30T09:00:00Z", "2026-11-30T09:01:00Z"]


def test_retention_and_latest_survive_reopening(tmp_path):
    path = tmp_path / "sub" / "h.db"
    store = Store(path, retention_s=3600)
    store.add([w(s) for s in range(120)] + [w(0, device="room-102", score=None, faces=2)])
    now = w(119).end_s
    # windows that ended more than an hour before: room-101's seq 0-58 and room-102's only one
    assert store.prune(now_s=now) == 59 + 1
    store.close()
    again = Store(path, retention_s=3600)
    assert again.count("room-101") == 61 and again.count("room-102") == 0
    latest = again.latest()
    assert list(latest) == ["room-101"] and latest["room-101"].seq == 119


def test_fleet_keeps_newest_window_on_the_tile():
    fleet = Fleet()
    assert fleet.window(w(5, faces=20)).latest.seq == 5
    assert fleet.window(w(3, faces=9)) is None  # late: the tile keeps seq 5
    fleet.availability("room-101", "online")
    assert fleet.get("room-101").tile(now_s=w(5).end_s + 12)["age_s"] == 12.0
    assert fleet.paused("room-101", True).state == "paused"
    assert fleet.paused("room-101", False).state == "online"
    assert fleet.status("room-101", "camera_stalled").state == "camera_stalled"
    assert fleet.availability("room-101", "offline").state == "offline"


def test_latest_of_every_unit(tmp_path):
    store = Store(tmp_path / "h.db", retention_s=1e9)
    store.add([w(s, device=d) for d in ("b-2", "a-1", "c-3") for s in range(4)] + [w(9, device="a-1", offset_s=2)])
    assert store.devices() == ["a-1", "b-2", "c-3"]
    # a-1's seq 9 was sent late and ended before seq 3: the newest by time is seq 3
    assert {d: x.seq for d, x in store.latest().items()} == {"a-1": 3, "b-2": 3, "c-3": 3}
    assert Store(tmp_path / "empty.db", retention_s=1).latest() == {}
