"""Issue 12, item 1: a dying MQTT session thread ends the process non-zero and stops the watchdog.

Real model, real mosquitto, real notify socket; the only fault injected is a bug in the
session thread itself (every known real trigger, such as an invalid HA prefix or a full disk
during an acknowledgement, is refused at start-up or handled, see test_fault_config.py and
test_fault_state.py, so a bug is what is left to guard against).
"""

from __future__ import annotations

import io
import logging
import threading
import time

import pytest

from conftest import CLASSROOM, Broker
from device.config import Settings
from device.publisher import Publisher
from device.service import Service
from device.state import StateStore
from device.systemd_notify import Notifier
from mqtt_helpers import Recorder
from test_watchdog import NotifySocket

WATCHDOG_USEC = 1_000_000


class BuggyPublisher(Publisher):
    """The real publisher, except that its session thread raises on the 30th outbox pump."""

    died_at: float | None = None

    def _pump(self, client):
        self.pumps = getattr(self, "pumps", 0) + 1
        if self.pumps == 30:
            self.died_at = time.monotonic()
            raise ZeroDivisionError("a bug in the session thread")
        super()._pump(client)


@pytest.mark.timeout(60)
def test_dead_session_thread_ends_the_run_non_zero_and_stops_the_watchdog(analyzer, tmp_path, caplog):
    broker = Broker(tmp_path).start()
    notify = NotifySocket(tmp_path / "notify.sock")
    avail = Recorder(broker.port, "roompulse/dead-session/availability", client_id="avail")
    cfg = Settings(_env_file=None, device_id="dead-session", source=str(CLASSROOM), source_loop=True, fps=4,
                   window_s=0.5, min_group_size=3, state_dir=tmp_path / "state", ha_discovery=False,
                   mqtt_host="127.0.0.1", mqtt_port=broker.port)
    state = StateStore(cfg.state_dir)
    publisher = BuggyPublisher(cfg, out=io.StringIO())
    notifier = Notifier({"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    service = Service(cfg, analyzer, publisher, state, notifier=notifier)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(service.run()), daemon=True)
    try:
        with caplog.at_level(logging.INFO):
            runner.start()
            runner.join(40)
        ended_at = time.monotonic()
        offline = avail.wait_for("roompulse/dead-session/availability", lambda p: p and p[-1] == "offline", 10)
    finally:
        service.stop_event.set()
        runner.join(10)
        state.close()
        avail.close()
        notify.close()
        broker.stop()
    assert publisher.died_at is not None, "the injected bug never ran"
    assert result == [1], "a dead session thread must end the run with exit code 1"
    assert ended_at - publisher.died_at < WATCHDOG_USEC / 1e6, "must end within one watchdog interval"
    late = [t for t in notify.times("WATCHDOG=1") if t > publisher.died_at + 0.3]
    assert not late, f"{len(late)} watchdog ping(s) after the session thread died"
    died = [r for r in caplog.records if r.levelno == logging.CRITICAL and "session thread died" in r.getMessage()]
    assert died and died[0].exc_info and died[0].exc_info[0] is ZeroDivisionError  # traceback through logging
    assert offline[-1] == "offline"  # the Last Will: the broker saw the connection die
    print(f"\nFIGURE dead session: run ended {ended_at - publisher.died_at:.2f} s after the thread died, "
          f"0 pings after, exit code 1")
