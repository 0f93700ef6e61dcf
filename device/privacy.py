"""``roompulse privacy-report``: what leaves the device, what stays, what is never collected.

Generated from the running configuration and from :mod:`device.contract`, the list the
publisher itself enforces, so the report cannot drift from what is published.
"""

from __future__ import annotations

from device.config import Settings
from device.contract import Channel, channels, fields
from device.state import DB_NAME, LOCK_NAME

NEVER_COLLECTED = (
    "camera frames, video, face crops or any other image (frames live in memory only while analysed)",
    "face embeddings, face recognition or identity of any person",
    "keypoints, boxes, head angles or any other per-face or per-person value",
    "emotion, mood, attention, interest, age, gender, ethnicity or any other personal attribute",
    "tracking of a person from one frame to the next",
    "audio",
)


class UndocumentedField(ValueError):
    """A published model has a field without a description."""


def undocumented(chans: list[Channel]) -> list[str]:
    """``Model.field`` for every field of a published model that has no description."""
    return [f"{c.model.__name__}.{name}" for c in chans for name, text in fields(c.model) if not text]


def _broker(settings: Settings) -> str:
    if not settings.mqtt_host:
        return "none configured: aggregates are printed on the unit's stdout (journal) only; nothing is sent"
    tls = "TLS, server certificate verified" if settings.mqtt_tls_ca else "no TLS (plain MQTT)"
    user = "with a user name and password" if settings.mqtt_username else "anonymous"
    return f"mqtt://{settings.mqtt_host}:{settings.port} ({tls}, {user}); no other network connection is made"


def _channel(chan: Channel) -> list[str]:
    lines = [f"  {chan.topic}  (QoS 1, {'retained' if chan.retained else 'not retained'})",
             f"    {chan.meaning}"]
    if chan.words:
        lines.append(f"    payload: the bare word {chan.words}")
    else:
        lines.append("    fields:")
        lines += [f"      {name}: {text}" for name, text in fields(chan.model)]
    lines.append(f"    example: {chan.example.to_json()}")
    return lines


def report(settings: Settings) -> str:
    """The privacy report for ``settings`` as plain text.

    Raises:
        UndocumentedField: a published field has no description (the report would be incomplete).
    """
    chans = channels(settings)
    missing = undocumented(chans)
    if missing:
        raise UndocumentedField("published fields without a description: " + ", ".join(missing))
    state = settings.state_dir / DB_NAME
    lines = [
        f"RoomPulse privacy report: device {settings.device_id}",
        "",
        "WHAT LEAVES THE DEVICE",
        f"  broker: {_broker(settings)}",
        "  messages (nothing else is published; the publisher refuses any other message type):",
    ]
    for chan in chans:
        lines += _channel(chan)
    lines += [
        "",
        "SUPPRESSION OF SMALL GROUPS",
        f"  engagement_score is withheld (null, suppressed: true) in every window whose faces_present is below "
        f"{settings.min_group_size}, or in which fewer faces than that (median per frame) were large or clear "
        "enough for their orientation to be called; the Home Assistant score entity then shows 'unknown'.",
        "  faces_present and faces_present_max are head counts (how many faces were visible, not what any",
        "  of them did) and are published for every window, as the engagement contract requires.",
        "",
        "WHAT IS STORED ON THE DEVICE",
        f"  {state} (SQLite): the engagement messages above, each with its topic, until the broker acknowledges "
        f"them, at most {settings.outbox_max_count} and at most {settings.outbox_max_age_s:g} s old; the next seq, the count "
        f"of dropped windows, the pause state and the sequence_id (also in {state}.sequence, 16 hex digits). "
        f"A damaged state file is kept beside it as {state}.corrupt-<UTC time> for inspection; "
        f"{settings.state_dir / LOCK_NAME} holds the process id of the run that owns the directory. Nothing else.",
        "  logs: standard error only (the systemd journal); no images and no per-face values are logged.",
        "",
        "WHAT IS NEVER COLLECTED, STORED OR SENT",
    ]
    lines += [f"  - {item}" for item in NEVER_COLLECTED]
    return "\n".join(lines) + "\n"
