"""Messages that are not RoomPulse windows, against the dashboard and a real mosquitto: each is
counted invalid, logged in a short line and acknowledged, and none holds back other rooms' windows."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import pytest

from conftest import Broker, free_port
from dashboard_helpers import T0, Dashboard, dashboard_env, mqtt_client, window
from device.dashboard.store import Store, Window


def metrics(dash: Dashboard) -> dict[str, float]:
    text = dash.get("/metrics")[2].decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def publish(client: mqtt.Client, topic: str, payload: str | bytes, retain: bool = False) -> None:
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)


def stored(db) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT device_id, seq, window_end FROM windows ORDER BY device_id").fetchall()


def good(device_id: str, seq: int = 0, start: datetime = T0) -> dict:
    return window(device_id, seq, start, 60, 12, 0.5).model_dump(by_alias=True)


def test_poison_messages_are_counted_and_acknowledged_and_never_block_other_rooms(tmp_path):
    broker = Broker(tmp_path).start()
    db = tmp_path / "history.db"
    env = dashboard_env(broker.port, db)
    http = free_port()
    dash = Dashboard(env, http).wait_ready()
    assert dash.stop() == 0  # the broker now keeps the session and queues for it
    client = mqtt_client(broker.port, "poison-publisher")
    try:
        room7 = good("room-7")
        poison = [
            {**room7, "faces_present": 2**70},  # too large for SQLite's INTEGER
            {**room7, "seq": 2**63},
            {**room7, "frames_analyzed": 10**8},
            {**room7, "window_start": "9999-12-31T23:59:59-01:00"},  # overflows the Unix-time conversion
            {**room7, "window_start": "2026-12-02"},  # a date alone
            {**room7, "window_start": "2026-11-30T08:02:00Z"},  # ends before it starts
        ]
        publish(client, "roompulse/room-7/status", "[" * 100000, retain=True)  # RecursionError in json.loads
        publish(client, "roompulse/room-8/engagement", json.dumps(good("room-8")))
        for payload in poison:
            publish(client, "roompulse/room-7/engagement", json.dumps(payload))
        publish(client, "roompulse/room-9/engagement", json.dumps(good("room-9")))

        # everything queued arrives as one burst when the dashboard comes back
        dash = Dashboard(env, http).wait_ready()
        # invalid: six windows, and the status twice (queued while away, then its retained copy on subscribing)
        dash.wait_until(lambda: len(stored(db)) == 2 and metrics(dash)[
            "roompulse_dashboard_invalid_messages_total"] == 8, what="two windows stored, eight invalid")
        assert stored(db) == [("room-8", 0, "2026-11-30T08:01:00Z"), ("room-9", 0, "2026-11-30T08:01:00Z")]
        m = metrics(dash)
        assert m["roompulse_dashboard_windows_stored_total"] == 2
        assert m["roompulse_dashboard_duplicates_total"] == 0
        log = "".join(dash.errors)
        assert "could not store" not in log
        warnings = [line for line in dash.errors if "invalid message on roompulse/room-7/" in line]
        assert len(warnings) == 3  # device.logs.RateLimit: 3 lines like it per 60 s
        # the broker may hand over the queued status after some windows (CI saw it), so which three
        # lines pass the rate limit is not fixed; the first window poison is always among them
        assert any("engagement dropped: faces_present: Input should be less than or equal to 10000" in line
                   for line in warnings)
        assert all(len(line) < 1000 for line in dash.errors)
        assert dash.stop() == 0

        # all were acknowledged: a restart gets nothing again but the retained status
        dash = Dashboard(env, http).wait_ready()
        dash.wait_until(lambda: metrics(dash)["roompulse_dashboard_invalid_messages_total"] == 1,
                        what="the retained status counted again")
        time.sleep(1.0)  # a redelivered window would be counted by now
        m = metrics(dash)
        assert (m["roompulse_dashboard_invalid_messages_total"], m["roompulse_dashboard_windows_stored_total"],
                m["roompulse_dashboard_duplicates_total"]) == (1, 0, 0)
        assert "room-9" in {r["device_id"] for r in dash.json("/api/rooms")["rooms"]}
        assert ("invalid message on roompulse/room-7/status dropped: payload: Invalid JSON: recursion limit "
                "exceeded") in "".join(dash.errors)
        assert all(len(line) < 1000 for line in dash.errors)
    finally:
        client.disconnect()
        client.loop_stop()
        dash.stop()
        broker.stop()


def test_window_is_accepted_only_from_its_own_devices_topic(broker, tmp_path):
    db = tmp_path / "history.db"
    dash = Dashboard(dashboard_env(broker.port, db), free_port()).wait_ready()
    client = mqtt_client(broker.port, "poison-publisher")
    try:
        publish(client, "roompulse/room-8/engagement", json.dumps(good("room-8", 4)))
        # another publisher speaks for room-8 (a window in 2099 would pin its tile), room-8 for room-9
        forged = good("room-8", 5, datetime(2099, 1, 1, tzinfo=timezone.utc))
        publish(client, "roompulse/attacker/engagement", json.dumps(forged))
        publish(client, "roompulse/room-8/engagement", json.dumps(good("room-9", 1)))
        dash.wait_until(lambda: metrics(dash)["roompulse_dashboard_invalid_messages_total"] == 2,
                        what="two mismatches counted invalid")
        assert stored(db) == [("room-8", 4, "2026-11-30T08:01:00Z")]
        rooms = dash.json("/api/rooms")["rooms"]
        assert [(r["device_id"], r["window_end"]) for r in rooms] == [("room-8", "2026-11-30T08:01:00Z")]
        age = metrics(dash)['roompulse_last_window_age_seconds{device_id="room-8"}']
        assert abs(age - (time.time() - (T0 + timedelta(seconds=60)).timestamp())) < 5
        assert ("invalid message on roompulse/attacker/engagement dropped: device_id 'room-8' is not the device "
                "of the topic it came on") in "".join(dash.errors)
    finally:
        client.disconnect()
        client.loop_stop()
        assert dash.stop() == 0


def test_long_topic_and_payload_are_cut_in_the_log(broker, tmp_path):
    dash = Dashboard(dashboard_env(broker.port, tmp_path / "history.db"), free_port()).wait_ready()
    client = mqtt_client(broker.port, "poison-publisher")
    try:
        long_id = "x" * 60000
        publish(client, f"roompulse/{long_id}/engagement", "{")
        publish(client, "roompulse/room-8/engagement", "{" + "y" * 100000)
        dash.wait_until(lambda: metrics(dash)["roompulse_dashboard_invalid_messages_total"] == 2,
                        what="both counted invalid")
        assert all(len(line) < 1000 for line in dash.errors), max(len(line) for line in dash.errors)
        lines = [line for line in dash.errors if "invalid message on" in line]
        assert len(lines) == 2
        assert f"roompulse/{'x' * 190}...[59821 more characters]" in lines[0]
        assert "payload (100001 bytes): '{" + "y" * 199 + "...[99801 more characters]'" in lines[1]
    finally:
        client.disconnect()
        client.loop_stop()
        assert dash.stop() == 0


def test_a_row_sqlite_refuses_is_dropped_alone(tmp_path):
    # The payload model keeps such rows out; commit() is the second line of defence.
    from device.dashboard.ingest import commit

    store = Store(tmp_path / "h.db", retention_s=1e9)
    first, second = (Window.from_payload(window("room-8", s, T0 + timedelta(minutes=s), 60, 9, 0.4)) for s in (0, 1))
    huge = replace(first, seq=7, faces_present=2**70)
    windows, new, refused = commit(store, [("a", first), ("b", huge), ("c", second)])
    assert (windows, new) == ([first, second], 2)
    assert refused == [("b", "OverflowError: Python int too large to convert to SQLite INTEGER")]
    assert [w.seq for w in store.between("room-8", 0, 2e9)] == [0, 1]


def test_a_locked_history_is_a_store_failure_not_the_messages_fault(tmp_path):
    # A store failure propagates (the writer leaves the batch unacknowledged); nothing is refused.
    from device.dashboard.ingest import commit

    store = Store(tmp_path / "h.db", retention_s=1e9)
    store._db().execute("PRAGMA busy_timeout = 200")  # the store waits 30 s; the test need not
    first = Window.from_payload(window("room-8", 0, T0, 60, 9, 0.4))
    other = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        commit(store, [("a", first)])
    other.execute("ROLLBACK")
    assert commit(store, [("a", first)]) == ([first], 1, [])
