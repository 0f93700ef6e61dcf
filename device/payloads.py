"""Every message the device publishes, as pydantic models with no extra fields.

The engagement payload is the contract ``roompulse.engagement/1`` of DESIGN.md: no other
fields, no arrays, no per-face values.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device.aggregator import WindowSummary

ENGAGEMENT_SCHEMA = "roompulse.engagement/1"
STATUS_SCHEMA = "roompulse.status/1"

# Bounds of the engagement payload. A subscriber stores these numbers (the dashboard in SQLite,
# whose INTEGER is signed 64-bit) and turns the times into Unix seconds, so a payload inside
# them can always be stored; a payload outside them was not made by a unit.
SEQ_MAX = 2**63 - 1  # SQLite's largest INTEGER; a unit making one window a second never gets near it
FACES_MAX = 10_000  # faces in one frame: far above any classroom (a 4K frame holds a few hundred)
FRAMES_MAX = 10_000_000  # frames in one window: 24 h at over 100 fps
# Window times: UTC only ("Z" or "+00:00"), date and time to the second, optional fraction.
UTC_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)", re.ASCII)
# No range on the year: a unit's clock may read anything (1969 just before an unset clock's
# epoch, or far ahead), and the unit must never refuse its own window. In UTC, every 4-digit
# year converts to Unix seconds; "9999-12-31T23:59:59-01:00", which overflowed, is refused by
# the UTC-only format.


def utc_iso(moment: datetime) -> str:
    """UTC ISO-8601 with a ``Z`` suffix and whole seconds, e.g. ``2026-11-29T10:00:00Z``."""
    return moment.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(value: str) -> datetime:
    """A window time (``2026-11-29T10:00:00Z``, ``...T10:00:00.5+00:00``) as an aware UTC datetime.

    Raises:
        ValueError: not a UTC ISO-8601 date and time (a date alone, another offset, no
            offset), or not a real date (month 13, year 0).
    """
    if not isinstance(value, str) or not UTC_ISO.fullmatch(value):
        raise ValueError("is not a UTC ISO-8601 date and time (YYYY-MM-DDTHH:MM:SSZ or ...+00:00)")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Engagement(BaseModel):
    """One window's aggregate (``<prefix>/engagement``, QoS 1, not retained)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["roompulse.engagement/1"] = Field(
        ENGAGEMENT_SCHEMA, alias="schema", description="payload schema name and version")
    device_id: str = Field(description="the unit that measured the window")
    seq: int = Field(ge=0, le=SEQ_MAX,
                     description="window number; increases by one per window and survives restarts")
    sequence_id: str = Field(
        pattern=r"^[0-9a-f]{16}$|^unknown$",
        description="names the run of seq values; a new one (and seq from 0) only when the unit's state file "
                    "was lost or damaged; de-duplicate on (device_id, sequence_id, seq)")
    window_start: str = Field(description="window start, UTC ISO-8601")
    window_end: str = Field(description="window end, UTC ISO-8601, not before window_start")
    frames_analyzed: int = Field(ge=0, le=FRAMES_MAX, description="frames analysed in the window")
    faces_present: int = Field(ge=0, le=FACES_MAX,
                               description="median number of faces detected per analysed frame")
    faces_present_max: int = Field(ge=0, le=FACES_MAX,
                                   description="most faces detected in any analysed frame of the window")
    engagement_score: float | None = Field(
        ge=0, le=1,
        description="share of face detections oriented toward the front, among those whose orientation "
                    "can be called at their size; null when suppressed")
    suppressed: bool = Field(description="true when faces_present, or the faces whose orientation could be called, "
                                        "are below min_group_size and the score is withheld")

    @field_validator("window_start", "window_end")
    @classmethod
    def _utc_time(cls, value: str) -> str:
        parse_utc(value)
        return value

    @model_validator(mode="after")
    def _suppression(self):
        if self.suppressed != (self.engagement_score is None):
            raise ValueError("engagement_score must be null exactly when suppressed is true")
        if parse_utc(self.window_end) < parse_utc(self.window_start):
            raise ValueError("window_end is before window_start")
        return self

    def to_json(self) -> str:
        """The wire form: compact JSON with ``schema`` first."""
        return self.model_dump_json(by_alias=True)


def engagement(device_id: str, seq: int, summary: WindowSummary, start: datetime, end: datetime,
               sequence_id: str) -> Engagement:
    """Build the payload of one window; ``start``/``end`` are its wall-clock bounds, ``sequence_id``
    the state file's (:mod:`device.state`)."""
    return Engagement(
        device_id=device_id,
        seq=seq,
        sequence_id=sequence_id,
        window_start=utc_iso(start),
        window_end=utc_iso(end),
        frames_analyzed=summary.frames_analyzed,
        faces_present=summary.faces_present,
        faces_present_max=summary.faces_present_max,
        engagement_score=summary.engagement_score,
        suppressed=summary.suppressed,
    )


class Status(BaseModel):
    """Device health (``<prefix>/status``, QoS 1, retained; every ``status_interval_s`` and on change)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["roompulse.status/1"] = Field(STATUS_SCHEMA, alias="schema", description="payload schema")
    state: Literal["starting", "running", "paused", "camera_stalled", "finished", "stopped"] = Field(
        description="what the service is doing")
    paused: bool = Field(False, description="true while the pause switch is on (source released, nothing analysed)")
    accelerator: Literal["cpu", "edgetpu"] = Field(description="where inference runs")
    fps: float = Field(ge=0, description="frames analysed per second over the last window")
    inference_ms: float = Field(ge=0, description="mean detector time per analysed frame, milliseconds")
    outbox_depth: int = Field(0, ge=0, description="windows stored in the outbox, not yet acknowledged by the broker")
    dropped: int = Field(0, ge=0, description="windows dropped by the outbox bounds or expiry")
    disk_full: bool = Field(False, description="true while windows cannot be written to the state disk (kept in memory)")
    unstored: int = Field(0, ge=0, description="windows that could not be written to the state disk since start")
    clash: bool = Field(False, description="true while another unit seems to use this unit's device_id or MQTT "
                                           "client id (the journal says why)")
    last_publish: str | None = Field(
        None, description="when the broker last acknowledged a window, UTC ISO-8601; null if never in this run")
    version: str = Field(description="RoomPulse version")
    timestamp: str = Field(description="when the status was made, UTC ISO-8601")
    clock_synced: bool | None = Field(
        None, description="wall clock synchronised by NTP since boot (systemd-timesyncd); null when unknown")

    def to_json(self) -> str:
        """The wire form: compact JSON."""
        return self.model_dump_json(by_alias=True)


class Word(BaseModel):
    """A one-word message: ``<prefix>/availability`` (``online``/``offline``, retained),
    ``<prefix>/paused`` (``ON``/``OFF``, Home Assistant's default switch payloads, retained) and
    ``<prefix>/doctor`` (``doctor``: ``roompulse doctor``'s acknowledged-publish check, not retained)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Literal["online", "offline", "ON", "OFF", "doctor"] = Field(
        description="online/offline: whether the unit runs; ON/OFF: whether the pause switch is on; "
                    "doctor: an installer's preflight check")

    def to_json(self) -> str:
        """The wire form: the bare word, not JSON."""
        return self.value


ONLINE, OFFLINE = Word(value="online"), Word(value="offline")
PAUSED_ON, PAUSED_OFF = Word(value="ON"), Word(value="OFF")
DOCTOR = Word(value="doctor")
