"""The dashboard against a real mosquitto: a small fleet stored exactly once across a SIGKILL of
the dashboard mid-load; states, late windows, CSV and /metrics from real messages."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta

from conftest import ROOT, Broker, free_port
from dashboard_helpers import T0, Dashboard, Unit, dashboard_env, fleet_window, window

UNITS = 20
CLIENTS = 2  # 10 units per MQTT client
RATE = 300.0  # windows per second per client
SECONDS = 4.0


def stored_rows(db) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT device_id, seq, window_start, window_end, frames_analyzed, faces_present, "
                           "faces_present_max, engagement_score, suppressed FROM windows").fetchall()


def test_small_fleet_stored_exactly_once_across_a_dashboard_kill(tmp_path):
    # The broker keeps the dashboard's session while it is down (no queue limit for this test).
    broker = Broker(tmp_path, extra_conf="max_queued_messages 0\n").start()
    db = tmp_path / "history.db"
    env = dashboard_env(broker.port, db)
    http = free_port()
    dash = Dashboard(env, http).wait_ready()
    try:
        per = UNITS // CLIENTS
        outs = [tmp_path / f"sent-{i}.json" for i in range(CLIENTS)]
        fleet = [subprocess.Popen([sys.executable, "tests/dashboard_helpers.py", "fleet", str(broker.port),
                                   str(i * per), str(per), str(RATE), str(SECONDS), str(outs[i])], cwd=ROOT)
                 for i in range(CLIENTS)]
        # kill once the load is flowing (the fleet processes take a moment to start on a busy machine)
        dash.wait_until(lambda: len(stored_rows(db)) >= 300, timeout=30, what="the load under way")
        before_kill = len(stored_rows(db))
        assert dash.stop(kill=True) == -9  # mid-load, no chance to finish anything
        time.sleep(0.5)
        dash = Dashboard(env, http).wait_ready()
        for proc in fleet:
            assert proc.wait(60) == 0
        sent = [tuple(s[:2]) for out in outs for s in json.loads(out.read_text())["sent"]]
        assert len(sent) == len(set(sent)) == int(RATE * SECONDS) * CLIENTS == 2400
        dash.wait_until(lambda: len(stored_rows(db)) >= len(sent), timeout=30, what="every window stored")
        time.sleep(0.5)  # anything more (a duplicate) would show now
        rows = stored_rows(db)
        assert len(rows) == len(sent)
        assert {(r[0], r[1]) for r in rows} == set(sent)
        for row in rows:  # each stored window is the one that unit published, field for field
            p = fleet_window(int(row[0].split("-")[1]), row[1])
            assert row == (p.device_id, p.seq, p.window_start, p.window_end, p.frames_analyzed, p.faces_present,
                           p.faces_present_max, p.engagement_score, int(p.suppressed))
        assert 300 <= before_kill < len(sent) / 2  # killed in the first half of the load
        rooms = dash.json("/api/rooms")["rooms"]
        assert len(rooms) == UNITS
        last_seq = int(RATE * SECONDS) // per - 1
        assert {r["device_id"]: r["faces_present"] for r in rooms} == {
            f"unit-{u:03d}": fleet_window(u, last_seq).faces_present for u in range(UNITS)}
        print(f"{len(sent)} windows from {UNITS} units at {RATE * CLIENTS:.0f}/s; {before_kill} stored before the "
              f"SIGKILL; all {len(rows)} stored once after the restart")
    finally:
        dash.stop()
        broker.stop()


def test_states_late_window_csv_and_metrics(broker, tmp_path):
    dash = Dashboard(dashboard_env(broker.port, tmp_path / "history.db", ROOMPULSE_MIN_GROUP_SIZE="6"),
                     free_port()).wait_ready()
    unit = Unit(broker.port, "room-201")
    other = Unit(broker.port, "room-202")
    try:
        # seq 2 arrives late (after 3 and 4, as from a unit's outbox after an outage); seq 1 is suppressed
        plan = [(0, 14, 0.71), (1, 5, None), (3, 16, 0.64), (4, 15, 0.69), (2, 13, 0.8), (3, 16, 0.64)]
        for seq, faces, score in plan:
            unit.publish(window("room-201", seq, T0 + timedelta(minutes=seq), 60, faces, score))
        other.publish(window("room-202", 7, T0, 60, 2, None))
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        # not RoomPulse windows: a device id made for a spreadsheet formula, a field too many, not JSON
        bad = window("room-202", 8, T0, 60, 9, 0.5).model_dump(by_alias=True)
        for payload in (json.dumps({**bad, "device_id": "=cmd|' /C calc'!A0"}), json.dumps({**bad, "faces": 3}), "{"):
            client.publish("roompulse/room-202/engagement", payload, qos=1).wait_for_publish(5)
        dash.wait_until(lambda: len(dash.json("/api/rooms")["rooms"]) == 2 and dash.json(
            "/api/rooms")["rooms"][0]["window_end"] == "2026-11-30T08:05:00Z", what="room-201's seq 4")

        day = date(2026, 11, 30).isoformat()
        status, headers, body = dash.get(f"/rooms/room-201.csv?from={day}&to={day}")
        assert status == 200 and headers["Content-Disposition"] == f'attachment; filename="room-201_{day}_{day}.csv"'
        assert list(csv.reader(io.StringIO(body.decode()))) == [
            ["device_id", "seq", "window_start", "window_end", "frames_analyzed", "faces_present",
             "faces_present_max", "engagement_score", "suppressed"],
            ["room-201", "0", "2026-11-30T08:00:00Z", "2026-11-30T08:01:00Z", "120", "14", "15", "0.71", "false"],
            ["room-201", "1", "2026-11-30T08:01:00Z", "2026-11-30T08:02:00Z", "120", "5", "6", "", "true"],
            ["room-201", "2", "2026-11-30T08:02:00Z", "2026-11-30T08:03:00Z", "120", "13", "14", "0.8", "false"],
            ["room-201", "3", "2026-11-30T08:03:00Z", "2026-11-30T08:04:00Z", "120", "16", "17", "0.64", "false"],
            ["room-201", "4", "2026-11-30T08:04:00Z", "2026-11-30T08:05:00Z", "120", "15", "16", "0.69", "false"],
        ]
        assert dash.get(f"/rooms/room-201.csv?from=2026-11-29&to={day}")[2].count(b"\n") == 6
        assert dash.get("/rooms/room-201.csv?from=2026-12-01&to=2026-12-01")[2].count(b"\n") == 1
        assert dash.get("/rooms/room-201.csv?from=2026-12-02&to=2026-12-01")[0] == 400
        assert dash.get("/rooms/nope.csv")[0] == 404
        chart = dash.json(f"/api/rooms/room-201/windows?day={day}")
        assert [(w["seq"], w["engagement_score"]) for w in chart["windows"]] == [
            (0, 0.71), (1, None), (2, 0.8), (3, 0.64), (4, 0.69)]
        assert chart["min_group_size"] == 6

        # states from the retained topics: paused, camera stalled, offline (a killed unit's Last Will)
        pub = Unit(broker.port, "operator")
        pub.proc.kill()
        client.publish("roompulse/room-201/paused", "ON", qos=1, retain=True).wait_for_publish(5)
        client.publish("roompulse/room-202/status", json.dumps({"state": "camera_stalled"}), qos=1,
                       retain=True).wait_for_publish(5)
        states = lambda: {r["device_id"]: r["state"] for r in dash.json("/api/rooms")["rooms"]}  # noqa: E731
        dash.wait_until(lambda: states() == {"room-201": "paused", "room-202": "camera_stalled", "operator": "offline"},
                        what="paused, camera_stalled, offline")

        metrics = dash.get("/metrics")[2].decode()
        lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line and not line.startswith("#")}
        assert lines['roompulse_engagement_score{device_id="room-201"}'] == 0.69
        assert lines['roompulse_faces_present{device_id="room-201"}'] == 15
        assert 'roompulse_engagement_score{device_id="room-202"}' not in lines  # suppressed: absent, never 0
        assert lines['roompulse_window_suppressed{device_id="room-202"}'] == 1
        assert lines['roompulse_unit_state{device_id="room-201",roompulse_unit_state="paused"}'] == 1
        assert lines['roompulse_unit_state{device_id="room-201",roompulse_unit_state="online"}'] == 0
        assert lines['roompulse_unit_state{device_id="room-202",roompulse_unit_state="camera_stalled"}'] == 1
        age = lines['roompulse_last_window_age_seconds{device_id="room-201"}']
        assert abs(age - (time.time() - T0.timestamp() - 300)) < 5
        assert lines["roompulse_dashboard_windows_stored_total"] == 6
        assert lines["roompulse_dashboard_duplicates_total"] == 1  # seq 3 twice
        assert lines["roompulse_dashboard_invalid_messages_total"] == 3
        client.disconnect()
        client.loop_stop()
    finally:
        unit.close()
        other.close()
        assert dash.stop() == 0


def test_broker_over_tls_with_a_password_file_as_the_service_reads_it(tmp_path):
    from test_tls_auth import make_ca, make_server_cert

    import paho.mqtt.client as mqtt

    ca_key, ca = make_ca(tmp_path, "test-ca")
    key, crt = make_server_cert(tmp_path, ca_key, ca)
    broker = Broker(tmp_path, tls=(ca, crt, key), passwords={"dashboard": "dash-Pw-5521", "unit": "unit-Pw-8812"})
    broker.start()
    (tmp_path / "pw").write_text("dash-Pw-5521\n")
    env = dashboard_env(broker.tls_port, tmp_path / "history.db", ROOMPULSE_MQTT_HOST="localhost",
                        ROOMPULSE_MQTT_TLS_CA=str(ca), ROOMPULSE_MQTT_USERNAME="dashboard",
                        ROOMPULSE_MQTT_PASSWORD_FILE=str(tmp_path / "pw"))
    dash = Dashboard(env, free_port()).wait_ready()
    unit = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="roompulse-room-301", protocol=mqtt.MQTTv5)
    unit.username_pw_set("unit", "unit-Pw-8812")
    unit.connect("127.0.0.1", broker.port)
    unit.loop_start()
    try:
        payload = window("room-301", 41, T0, 60, 22, 0.73)
        unit.publish("roompulse/room-301/engagement", payload.to_json(), qos=1).wait_for_publish(5)
        rooms = dash.wait_until(lambda: dash.json("/api/rooms")["rooms"], what="room-301 over TLS")
        assert [(r["device_id"], r["faces_present"], r["engagement_score"]) for r in rooms] == [("room-301", 22, 0.73)]
        assert "dash-Pw-5521" not in "".join(dash.errors)
    finally:
        unit.disconnect()
        unit.loop_stop()
        assert dash.stop() == 0
        broker.stop()
