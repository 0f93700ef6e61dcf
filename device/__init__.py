"""RoomPulse: on-device face detection -> group-level engagement aggregates over MQTT."""

__version__ = "0.1.0"
