"""The outbox soak (scripts/soak_outbox.py): 2,000 windows, broker restarted 5 times, nothing lost."""

import json
import subprocess
import sys

from conftest import ROOT


def test_2000_windows_through_5_broker_restarts_arrive_all_in_order():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak_outbox.py"), "--windows", "2000",
                             "--restarts", "5"], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["broker_restarts"] == 5
    assert figures["received_unique"] == 2000 and figures["lost"] == 0 and figures["out_of_order"] == 0
    assert figures["left_in_outbox"] == 0 and figures["dropped"] == 0
    assert "may be using client id" not in result.stderr and "CLASH" not in result.stderr  # broker restarts are not mistaken for a client id clash
    print("\nFIGURE soak:", json.dumps(figures))
