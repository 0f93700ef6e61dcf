"""The dashboard page in a real headless Chromium, fed by three simulated units through a real
mosquitto: tiles, live update, Last Will, labelled gap. Takes docs/dashboard.png (README)."""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import ROOT, Broker, free_port
from dashboard_helpers import Dashboard, Unit, chromium, dashboard_env, window


LENGTH_S = 30
HISTORY = 12
# (faces present, score) of each unit's windows; None = suppressed (fewer than 5 faces)
SERIES = {
    "room-101": [(20 + i % 5, round(0.60 + 0.02 * i, 2)) for i in range(HISTORY)],
    "room-102": [(3, None) if i in (5, 6) else (15 + i % 4, round(0.70 - 0.01 * i, 2)) for i in range(HISTORY)],
    "room-103": [(9, 0.5)] * (HISTORY - 1) + [(4, None)],
}

TILES_JS = """
return Array.from(document.querySelectorAll('.tile')).map(t => ({
  id: t.dataset.device, state: t.dataset.state,
  faces: t.querySelector('.faces .value').textContent, score: t.querySelector('.score .value').textContent,
  note: t.querySelector('.suppressed-note').textContent, age: t.querySelector('.age').textContent}));
"""


def tiles(driver) -> dict[str, dict]:
    return {t["id"]: t for t in driver.execute_script(TILES_JS)}


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def fleet(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium and chromium-driver are not installed: run 'make test' (scripts/setup.sh installs them)")
    broker = Broker(tmp_path).start()
    dash = Dashboard(dashboard_env(broker.port, tmp_path / "history.db"), free_port()).wait_ready()
    units = {name: Unit(broker.port, name) for name in SERIES}
    yield broker, dash, units
    for unit in units.values():
        unit.close() if unit.proc.poll() is None else None
    dash.stop()
    broker.stop()


def test_dashboard_page_in_chromium(fleet):
    broker, dash, units = fleet
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=LENGTH_S * HISTORY)
    for name, series in SERIES.items():
        for seq, (faces, score) in enumerate(series):
            units[name].publish(window(name, seq, start + timedelta(seconds=LENGTH_S * seq), LENGTH_S, faces, score))
    dash.wait_until(lambda: all(t["window_end"] and t["faces_present"] == SERIES[t["device_id"]][-1][0]
                                for t in dash.json("/api/rooms")["rooms"]) and len(dash.json("/api/rooms")["rooms"]) == 3,
                    what="the three units' last windows stored")

    driver = chromium()
    try:
        driver.get(dash.url + "/#room=room-102")
        shown = wait(lambda: len(tiles(driver)) == 3 and tiles(driver), 10, "three tiles")
        assert {k: (v["state"], v["faces"], v["score"], v["note"]) for k, v in shown.items()} == {
            "room-101": ("online", "21", "82 %", ""),
            "room-102": ("online", "18", "59 %", ""),
            "room-103": ("online", "4", "\u2013", "no score: fewer than 5 faces"),
        }
        assert all(v["age"].startswith("last window ") and v["age"].endswith(" s ago") for v in shown.values())

        # room-102's chart: 12 windows; the two suppressed ones are one labelled gap, not zeros.
        wait(lambda: driver.execute_script("return document.getElementById('chart').dataset.windows") == "12", 10,
             "room-102's chart")
        gaps = driver.execute_script(
            "return Array.from(document.querySelectorAll('#chart .gap')).map(g => "
            "({text: g.textContent, width: g.getBoundingClientRect().width}))")
        assert [g["text"] for g in gaps] == ["no score: fewer than 5 faces"]
        plot_width = driver.execute_script("return document.querySelector('#chart .u-over').clientWidth")
        # 2 of 12 windows (60 s of the 330 s between the first and last window middles)
        assert gaps[0]["width"] == pytest.approx(plot_width * 60 / 330, rel=0.05)
        score_column = driver.execute_script("return document.getElementById('chart').dataset.device")
        assert score_column == "room-102"

        # live: a new window shows on the tile and in the chart within 2 s, without reloading
        new_start = start + timedelta(seconds=LENGTH_S * HISTORY)
        acked = units["room-102"].publish(window("room-102", HISTORY, new_start, LENGTH_S, 27, 0.83))
        wait(lambda: tiles(driver)["room-102"]["faces"] == "27" and tiles(driver)["room-102"]["score"] == "83 %", 2.0,
             "the new window on room-102's tile")
        tile_s = time.monotonic() - acked
        wait(lambda: driver.execute_script("return document.getElementById('chart').dataset.windows") == "13",
             2.0 - tile_s, "the new window in room-102's chart")
        chart_s = time.monotonic() - acked
        print(f"new window: tile after {tile_s:.2f} s, chart after {chart_s:.2f} s")

        # a unit killed with SIGKILL: the broker publishes its Last Will, the tile says offline
        units["room-103"].kill()
        killed = time.monotonic()
        wait(lambda: tiles(driver)["room-103"]["state"] == "offline", 5.0, "room-103 offline")
        print(f"SIGKILLed unit offline on the page after {time.monotonic() - killed:.2f} s")
        assert tiles(driver)["room-103"]["faces"] == "4"  # its last window is still shown
        assert driver.execute_script("return document.location.href").endswith("/#room=room-102")  # no reload

        (ROOT / "docs").mkdir(exist_ok=True)
        driver.set_window_size(1280, 820)
        time.sleep(0.3)
        driver.save_screenshot(str(ROOT / "docs" / "dashboard.png"))
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []  # no CSP violation, no script error, no missing asset
    finally:
        driver.quit()
