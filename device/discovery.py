"""Home Assistant MQTT device-based discovery, built from pydantic models with no extra fields.

One retained message on ``<ha_prefix>/device/roompulse_<device_id>/config`` announces the
device and its four entities (engagement score %, faces present, device status, pause
switch). Field names and the required keys follow Home Assistant's MQTT integration
documentation, "Device discovery payload" (home-assistant.io/integrations/mqtt): ``dev``
(device: ``ids`` required), ``o`` (origin: ``name`` required), ``cmps`` (components: ``p`` =
platform required, ``unique_id`` required for entity platforms), plus shared ``avty``
(availability). A sensor needs ``state_topic``; a switch needs ``command_topic``.

Minimum group size: the engagement sensor's template renders ``None`` when the window's
score is suppressed, which Home Assistant's MQTT sensor turns into the state ``unknown``:
no number is shown for a suppressed window.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from device import __version__
from device.config import Settings

# Renders the share as a percentage, or None (-> HA state "unknown") for a suppressed window.
SCORE_TEMPLATE = (
    "{{ (value_json.engagement_score * 100) | round(1) "
    "if value_json.engagement_score is not none else None }}"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HADevice(_Strict):
    """``dev``: the device registry entry (HA requires ``ids`` or connections)."""

    identifiers: list[str] = Field(alias="ids", min_length=1, description="device registry identifiers")
    name: str = Field(description="device name shown in Home Assistant")
    manufacturer: str = Field(alias="mf", description="manufacturer shown in Home Assistant")
    model: str = Field(alias="mdl", description="model shown in Home Assistant")
    sw_version: str = Field(alias="sw", description="RoomPulse version")


class HAOrigin(_Strict):
    """``o``: the software that sent the message (HA requires ``name`` in device discovery)."""

    name: str = Field(description="the application that publishes the discovery message (required by HA)")
    sw_version: str = Field(alias="sw", description="RoomPulse version")


class HAAvailability(_Strict):
    """One ``avty`` entry: the topic and payloads that mark every entity available or not."""

    topic: str = Field(alias="t", description="the availability topic")
    payload_available: str = Field("online", alias="pl_avail", description="payload meaning available")
    payload_not_available: str = Field("offline", alias="pl_not_avail", description="payload meaning unavailable")


class HAComponent(_Strict):
    """One entity in ``cmps``; ``None`` fields are left out of the message."""

    platform: Literal["sensor", "switch"] = Field(alias="p", description="Home Assistant entity platform")
    unique_id: str = Field(description="entity id, unique per unit and entity")
    name: str = Field(description="entity name")
    state_topic: str = Field(description="topic the entity reads its state from")
    value_template: str | None = Field(
        None, description="how Home Assistant reads the state from the message (score: none when suppressed)")
    unit_of_measurement: str | None = Field(None, description="unit shown in Home Assistant")
    state_class: Literal["measurement"] | None = Field(None, description="Home Assistant statistics class")
    expire_after: int | None = Field(None, ge=1, description="seconds without an update before 'unavailable'")
    entity_category: Literal["diagnostic"] | None = Field(None, description="Home Assistant entity category")
    icon: str | None = Field(None, description="icon shown in Home Assistant")
    command_topic: str | None = Field(None, description="topic the switch sends ON/OFF commands to")
    payload_on: str | None = Field(None, description="command payload for on")
    payload_off: str | None = Field(None, description="command payload for off")
    qos: int = Field(1, description="MQTT QoS of the entity's messages")


class HADeviceDiscovery(_Strict):
    """The whole device-based discovery payload."""

    device: HADevice = Field(alias="dev", description="the device registry entry")
    origin: HAOrigin = Field(alias="o", description="the software that sent the message")
    components: dict[str, HAComponent] = Field(alias="cmps", min_length=1, description="the entities, by key")
    availability: list[HAAvailability] = Field(alias="avty", description="availability shared by every entity")
    qos: int = Field(1, description="MQTT QoS of the entities' messages")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


def discovery_topic(settings: Settings) -> str:
    """``<ha_prefix>/device/roompulse_<device_id>/config``."""
    return f"{settings.ha_prefix.rstrip('/')}/device/roompulse_{settings.device_id}/config"


def discovery(settings: Settings) -> HADeviceDiscovery:
    """The discovery payload for this unit.

    ``expire_after``: two windows plus 30 s for the window sensors (a paused or stopped unit
    turns them 'unavailable'), three status periods for the status sensor.
    """
    prefix, uid = settings.prefix, f"roompulse_{settings.device_id}"
    window_expiry = int(2 * settings.window_s + 30)
    status_expiry = int(3 * settings.status_interval_s)
    return HADeviceDiscovery(
        device=HADevice(identifiers=[uid], name=f"RoomPulse {settings.device_id}", manufacturer="RoomPulse",
                        model="classroom engagement sensor", sw_version=__version__),
        origin=HAOrigin(name="roompulse", sw_version=__version__),
        availability=[HAAvailability(topic=f"{prefix}/availability")],
        components={
            "engagement": HAComponent(
                platform="sensor", unique_id=f"{uid}_engagement", name="Engagement score",
                state_topic=f"{prefix}/engagement", value_template=SCORE_TEMPLATE, unit_of_measurement="%",
                state_class="measurement", expire_after=window_expiry, icon="mdi:account-group"),
            "faces": HAComponent(
                platform="sensor", unique_id=f"{uid}_faces", name="Faces present",
                state_topic=f"{prefix}/engagement", value_template="{{ value_json.faces_present }}",
                unit_of_measurement="faces", state_class="measurement", expire_after=window_expiry,
                icon="mdi:account-multiple"),
            "status": HAComponent(
                platform="sensor", unique_id=f"{uid}_status", name="Status", state_topic=f"{prefix}/status",
                value_template="{{ value_json.state }}", expire_after=status_expiry,
                entity_category="diagnostic", icon="mdi:information-outline"),
            "paused": HAComponent(
                platform="switch", unique_id=f"{uid}_paused", name="Paused", state_topic=f"{prefix}/paused",
                command_topic=f"{prefix}/paused/set", payload_on="ON", payload_off="OFF", icon="mdi:pause"),
        },
    )
