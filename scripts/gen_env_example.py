#!/usr/bin/env python3
"""Write systemd/roompulse.env.example from the Settings class (every variable, its meaning, its default)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.config import ENV_PREFIX, Settings  # noqa: E402

# Defaults that depend on other settings or the host, said in words.
SPOKEN = {
    "device_id": "host name and 6 hex digits derived from /etc/machine-id, e.g. raspberrypi-3f9a1c",
    "topic_prefix": "roompulse/<device_id>",
    "mqtt_port": "1883, or 8883 with TLS",
}

HEADER = """\
# RoomPulse settings. Copy to /etc/roompulse/roompulse.env (mode 0640, root:roompulse).
# Every variable is optional; a commented-out line shows the default, and an empty value
# (VARIABLE=) means the default too.
# An invalid value stops the service with exit code 78 and a message naming the variable.
# Check with: roompulse --env-file /etc/roompulse/roompulse.env check-config
"""


def main() -> None:
    lines = [HEADER]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=False)
        value = "" if default is None or name in SPOKEN else str(default).lower() if isinstance(default, bool) else str(default)
        said = SPOKEN.get(name, value or "empty")
        lines += [f"# {field.description} (default: {said})", f"#{ENV_PREFIX}{name.upper()}={value}", ""]
    (ROOT / "systemd" / "roompulse.env.example").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
