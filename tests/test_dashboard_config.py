"""`roompulse dashboard` settings: exit 78 naming the variable, no network bind without
authentication, 401 without credentials, security headers on every response."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

from conftest import ROOT, free_port
from dashboard_helpers import Dashboard, dashboard_env


def dashboard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "device", "dashboard", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


def test_invalid_settings_exit_78_naming_each_variable(tmp_path):
    env = dashboard_env(1883, tmp_path / "h.db", ROOMPULSE_MQTT_PORT="0", ROOMPULSE_DASHBOARD_RETENTION_DAYS="-1")
    result = dashboard(env)
    assert result.returncode == 78
    assert "ROOMPULSE_MQTT_PORT (broker port" in result.stderr
    assert "ROOMPULSE_DASHBOARD_RETENTION_DAYS (windows older than this" in result.stderr
    result = dashboard(dashboard_env(1883, tmp_path / "h.db", ROOMPULSE_MQTT_HOST=""))
    assert result.returncode == 78 and "ROOMPULSE_MQTT_HOST is empty" in result.stderr
    result = dashboard(dashboard_env(1883, tmp_path / "h.db"), "--listen", "localhost")
    assert result.returncode == 78 and "--listen" in result.stderr and "is not HOST:PORT" in result.stderr
    missing = tmp_path / "ca.pem"
    result = dashboard(dashboard_env(1883, tmp_path / "h.db", ROOMPULSE_MQTT_TLS_CA=str(missing)))
    assert result.returncode == 78 and f"ROOMPULSE_MQTT_TLS_CA: {missing} is not a readable file" in result.stderr


def test_network_address_without_password_or_token_refuses_to_start(tmp_path):
    port = free_port()
    result = dashboard(dashboard_env(1883, tmp_path / "h.db"), "--listen", f"0.0.0.0:{port}")
    assert result.returncode == 78
    assert f"refusing to listen on 0.0.0.0:{port} without authentication" in result.stderr
    assert "ROOMPULSE_DASHBOARD_PASSWORD" in result.stderr and "ROOMPULSE_DASHBOARD_TOKEN" in result.stderr
    result = dashboard(dashboard_env(1883, tmp_path / "h.db", ROOMPULSE_DASHBOARD_LISTEN=f"10.1.2.3:{port}"))
    assert result.returncode == 78 and "refusing to listen on 10.1.2.3" in result.stderr
    assert not (tmp_path / "h.db").exists()  # refused before anything was opened


def test_unauthenticated_request_gets_401_and_every_response_security_headers(broker, tmp_path):
    env = dashboard_env(broker.port, tmp_path / "h.db", ROOMPULSE_DASHBOARD_PASSWORD="correct horse",
                        ROOMPULSE_DASHBOARD_TOKEN="s3cr3t-token-for-prometheus", ROOMPULSE_DASHBOARD_RETENTION="9")
    dash = Dashboard(env, free_port()).wait_ready()
    try:
        assert "ROOMPULSE_DASHBOARD_RETENTION is not a dashboard setting and is ignored" in "".join(dash.errors)
        basic = "Basic " + base64.b64encode(b"roompulse:correct horse").decode()
        wrong = "Basic " + base64.b64encode(b"roompulse:wrong horse").decode()
        for path in ("/", "/api/rooms", "/api/events", "/metrics", "/static/dashboard.js", "/rooms/x.csv"):
            status, headers, _ = dash.get(path)
            assert status == 401, path
            assert headers["WWW-Authenticate"].startswith('Basic realm="RoomPulse dashboard"')
            assert dash.get(path, {"Authorization": wrong})[0] == 401
            assert dash.get(path, {"Authorization": "Bearer not-the-token"})[0] == 401
        status, headers, body = dash.get("/", {"Authorization": basic})
        assert status == 200 and b'<script src="/static/dashboard.js" defer></script>' in body
        assert b"<script>" not in body and b"http" not in body.replace(b'http-equiv', b'')  # no inline code, no CDN
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        status, headers, body = dash.get("/metrics", {"Authorization": "Bearer s3cr3t-token-for-prometheus"})
        assert status == 200 and b"roompulse_dashboard_broker_connected 1.0" in body
        assert headers["x-frame-options"] == "DENY"
    finally:
        assert dash.stop() == 0


ENV_FILE = """\
ROOMPULSE_MQTT_HOST=127.0.0.1
ROOMPULSE_MQTT_PORT=
ROOMPULSE_MIN_GROUP_SIZE=
ROOMPULSE_DASHBOARD_CHART_HOURS=
ROOMPULSE_DASHBOARD_SESSION_EXPIRY_S=
ROOMPULSE_DASHBOARD_PASSWORD=open${HOME}sesame
ROOMPULSE_DASHBOARD_TOKEN=tok-abcdefgh #x
"""


def test_env_file_read_as_the_service_reads_it(tmp_path, monkeypatch):
    from device.dashboard.settings import load

    for name in [n for n in os.environ if n.startswith("ROOMPULSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setenv("ROOMPULSE_DASHBOARD_RETENTION_DAYS", "")  # empty in the environment: the default too
    (tmp_path / "dashboard.env").write_text(ENV_FILE)
    config = load(tmp_path / "dashboard.env")
    # VARIABLE= means the default, as in the service (README: any line of the example may be uncommented)
    assert (config.broker.port, config.broker.min_group_size) == (1883, 5)
    d = config.dashboard
    assert (d.chart_hours, d.session_expiry_s, d.retention_days) == (3.0, 604800, 400.0)
    # systemd's EnvironmentFile= rules: no ${VAR} expansion, '#' inside a value is kept
    assert d.password.get_secret_value() == "open${HOME}sesame"
    assert d.token.get_secret_value() == "tok-abcdefgh #x"


def test_dashboard_process_authenticates_with_the_env_files_literal_secrets(broker, tmp_path):
    secrets = "".join(line + "\n" for line in ENV_FILE.splitlines() if "PASSWORD" in line or "TOKEN" in line)
    (tmp_path / "dashboard.env").write_text(secrets + "ROOMPULSE-DASHBOARD-DB=/tmp/x.db\n")
    env = dashboard_env(broker.port, tmp_path / "h.db", HOME="/root")  # the port from the environment wins
    dash = Dashboard(env, free_port(), "--env-file", str(tmp_path / "dashboard.env"))
    try:
        dash.wait_ready(headers={"Authorization": "Bearer tok-abcdefgh #x"})
        literal = "Basic " + base64.b64encode(b"roompulse:open${HOME}sesame").decode()
        expanded = "Basic " + base64.b64encode(b"roompulse:open/rootsesame").decode()
        assert dash.get("/api/rooms", {"Authorization": literal})[0] == 200
        assert dash.get("/api/rooms", {"Authorization": expanded})[0] == 401
        assert dash.get("/metrics", {"Authorization": "Bearer tok-abcdefgh #x"})[0] == 200
        assert dash.get("/metrics", {"Authorization": "Bearer tok-abcdefgh"})[0] == 401
        # a line systemd ignores is reported, as the service reports it
        assert (f"{tmp_path / 'dashboard.env'} line 3: ROOMPULSE-DASHBOARD-DB is not a valid variable name: "
                "the assignment is ignored (as systemd ignores it)") in "".join(dash.errors)
    finally:
        assert dash.stop() == 0
