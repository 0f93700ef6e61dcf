"""The payload contract: every topic the device publishes on, and the model its messages are built from.

The publisher refuses any message whose type is not listed here (:func:`check`), and
``roompulse privacy-report`` is generated from the same list (:mod:`device.privacy`), so
what the report says leaves the device cannot drift from what does.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from device.config import Settings
from device.discovery import HADeviceDiscovery, discovery, discovery_topic
from device.payloads import DOCTOR, ONLINE, PAUSED_OFF, Engagement, Status, Word

PUBLISHABLE: tuple[type[BaseModel], ...] = (Engagement, Status, Word, HADeviceDiscovery)


class ContractError(TypeError):
    """Something other than a contract model was handed to the publisher."""


def check(message: object) -> BaseModel:
    """Return ``message`` if it is an instance of a contract model.

    Raises:
        ContractError: naming the type and the models that are allowed.
    """
    if not isinstance(message, PUBLISHABLE):
        allowed = ", ".join(m.__name__ for m in PUBLISHABLE)
        raise ContractError(f"refusing to publish a {type(message).__name__}: only {allowed} may leave the device")
    return message


@dataclass(frozen=True)
class Channel:
    """One topic: where, how, what it means, which model, and a real example message."""

    topic: str
    retained: bool
    meaning: str
    model: type[BaseModel]
    example: BaseModel
    words: str = ""


EXAMPLE_ENGAGEMENT = dict(
    seq=42, sequence_id="3f9c2a7d51e0b846", window_start="2026-11-29T10:00:00Z", window_end="2026-11-29T10:01:00Z", frames_analyzed=120,
    faces_present=23, faces_present_max=25, engagement_score=0.78, suppressed=False,
)


def channels(settings: Settings) -> list[Channel]:
    """Every topic this configuration publishes on (discovery only when enabled)."""
    prefix = settings.prefix
    out = [
        Channel(f"{prefix}/availability", True, "whether the unit is running; 'offline' is also the Last Will",
                Word, ONLINE, words="online | offline"),
        Channel(f"{prefix}/engagement", False,
                f"one group aggregate per {settings.window_s:g} s window",
                Engagement, Engagement(device_id=settings.device_id, **EXAMPLE_ENGAGEMENT)),
        Channel(f"{prefix}/status", True, f"device health, every {settings.status_interval_s:g} s and on change",
                Status, Status(state="running", accelerator="cpu", fps=2.0, inference_ms=41.5, outbox_depth=0,
                               dropped=0, last_publish="2026-11-29T10:01:00Z", version="x.y.z",
                               timestamp="2026-11-29T10:01:02Z")),
        Channel(f"{prefix}/paused", True, "the pause switch's state (also read: <prefix>/paused/set)",
                Word, PAUSED_OFF, words="ON | OFF"),
        Channel(f"{prefix}/doctor", False, "only while an installer runs 'roompulse doctor': one message proving "
                "the broker acknowledges a QoS 1 publish (MQTT expiry 60 s); never sent by the service",
                Word, DOCTOR, words="doctor"),
    ]
    if settings.ha_discovery:
        out.append(Channel(discovery_topic(settings), True, "Home Assistant device discovery (entity definitions)",
                           HADeviceDiscovery, discovery(settings)))
    return out


def fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None]]:
    """``(dotted wire name, description)`` of every field of ``model``, nested models included."""
    out = []
    for name, info in model.model_fields.items():
        wire = prefix + (info.alias or name)
        out.append((wire, info.description))
        for inner in _models_in(info.annotation):
            out.extend(fields(inner, wire + "."))
    return out


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]
