"""``roompulse dashboard``: a subscriber process with history, a live page, CSV and /metrics.

The unit serves nothing; this runs on a school server (or any machine that reaches the
broker). Stages, data flowing one way:

    settings.py  ROOMPULSE_DASHBOARD_* and the service's broker settings -> Config
    ingest.py    MQTT subscription (persistent session, QoS 1, manual PUBACK after commit)
    store.py     SQLite history, de-duplicated by device_id and seq, bounded by retention
    fleet.py     each unit's live state (online, offline, paused, camera stalled) and tile
    web.py       Starlette app: page, JSON, Server-Sent Events, CSV, Prometheus /metrics
"""

from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path

log = logging.getLogger(__name__)


def run(env_file: Path | None = None, listen: str | None = None) -> int:
    """Load the settings, open the history, serve until SIGTERM/SIGINT; returns the exit code.

    Raises:
        device.config.ConfigError: invalid settings, or a network address without
            authentication (exit 78).
        device.dashboard.store.StoreError: the history file cannot be opened (exit 1).
        RuntimeError: the dashboard's packages are not installed (``pip install roompulse[dashboard]``).
    """
    from device.config import env_file_in_force
    from device.dashboard.settings import load, unknown_variables
    from device.envfile import problems

    config = load(env_file, listen)
    env_file = env_file_in_force(env_file)
    if env_file:
        for problem in problems(env_file):  # lines systemd ignores, reported as the service reports them
            log.warning("%s", problem)
    for name in unknown_variables(env_file):
        log.warning("%s is not a dashboard setting and is ignored", name)
    try:
        import uvicorn

        from device.dashboard.fleet import Fleet
        from device.dashboard.ingest import Ingest
        from device.dashboard.store import Store
        from device.dashboard.web import Hub, create_app
    except ImportError as exc:
        raise RuntimeError(f"the dashboard needs the 'dashboard' extra: pip install 'roompulse[dashboard]' "
                           f"({exc.name} is missing)") from None
    d = config.dashboard
    store = Store(d.db, d.retention_days * 86400)
    fleet = Fleet()
    for window in store.latest().values():
        fleet.window(window)
    hub = Hub()
    ingest = Ingest(config.broker, d, store, fleet, on_change=hub.changed)
    app = create_app(config, store, fleet, ingest, hub)
    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises SIGTERM after its shutdown (exit -15); a stop is a clean exit here.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, frame: setattr(self, "should_exit", True))
            yield

    server = Server(uvicorn.Config(
        app, host=d.bind.host, port=d.bind.port, log_level="warning", access_log=False, server_header=False,
        proxy_headers=False, timeout_graceful_shutdown=2, lifespan="on"))
    server.run()
    return 0 if server.started else 1
