"""Settings of ``roompulse dashboard``: ``ROOMPULSE_DASHBOARD_*`` plus the service's broker settings.

Two pydantic-settings classes read the same sources as the service's settings: the
environment, then the env file read as systemd's ``EnvironmentFile=`` reads it
(:func:`device.config.env_file_values`); the environment wins, and an empty value
(``VARIABLE=``) means the default:

- :class:`BrokerSettings`: the broker variables of the service (``ROOMPULSE_MQTT_HOST``,
  ``_PORT``, ``_USERNAME``, ``_PASSWORD``, ``_PASSWORD_FILE``, ``_TLS_CA``/``_CERT``/``_KEY``,
  ``ROOMPULSE_MQTT_RECONNECT_MAX_S``) and ``ROOMPULSE_MIN_GROUP_SIZE`` (for the gap label),
  with the field definitions, file checks, password lookup and port default of
  :class:`device.config.Settings` itself, so one env file serves a unit and the dashboard;
- :class:`DashboardSettings`: what only the dashboard has, prefix ``ROOMPULSE_DASHBOARD_``.

Invalid values raise :class:`device.config.ConfigError` naming every bad variable (exit 78).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from device.config import ENV_PREFIX, ConfigError, Settings, env_file_in_force, env_file_values
from device.envfile import read_env_file

DASHBOARD_PREFIX = ENV_PREFIX + "DASHBOARD_"
DEFAULT_LISTEN = "127.0.0.1:8080"
BROKER_FIELDS = ("mqtt_host", "mqtt_port", "mqtt_username", "mqtt_password", "mqtt_password_file",
                 "mqtt_tls_ca", "mqtt_tls_cert", "mqtt_tls_key", "mqtt_reconnect_max_s", "min_group_size",
                 "allow_small_groups")


def _service_field(name: str):
    """``(annotation, FieldInfo)`` of the service's setting ``name``, for create_model."""
    info = Settings.model_fields[name]
    return info.annotation, info


class _BrokerBase(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False,
                                      validate_default=True, env_ignore_empty=True)

    @model_validator(mode="after")
    def _service_checks(self):
        Settings._files_exist(self)  # the service's own check: files exist, key needs cert
        if not self.mqtt_host:
            raise ValueError("ROOMPULSE_MQTT_HOST is empty: the dashboard subscribes to a broker; "
                             "set it to the broker the units publish to")
        return self

    def password(self) -> str | None:
        """The broker password, looked up as the service does (:meth:`device.config.Settings.password`)."""
        return Settings.password(self)

    @property
    def port(self) -> int:
        """Broker port in force: the configured one, else 8883 with TLS, else 1883."""
        return Settings.port.fget(self)


BrokerSettings = create_model(
    "BrokerSettings", __base__=_BrokerBase,
    __doc__="The service's broker settings (and ROOMPULSE_MIN_GROUP_SIZE), same variables, same checks.",
    **{name: _service_field(name) for name in BROKER_FIELDS},
)


@dataclass(frozen=True)
class Listen:
    """Where the web server listens: ``host`` (a name or an IP address) and TCP ``port``."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``: nobody else can connect."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve to a network address

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> Listen:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as a :class:`Listen`.

    Raises:
        ValueError: no port, a port outside 1-65535, or an empty host.
    """
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8080, [::1]:8080)")
    return Listen(host.strip("[]"), int(port))


class DashboardSettings(BaseSettings):
    """The dashboard's own settings; each field upper-cased and prefixed ``ROOMPULSE_DASHBOARD_``."""

    model_config = SettingsConfigDict(env_prefix=DASHBOARD_PREFIX, extra="ignore", case_sensitive=False,
                                      validate_default=True, env_ignore_empty=True)

    listen: str = Field(DEFAULT_LISTEN, description="HOST:PORT the web server binds; a non-loopback address "
                                                    "needs ROOMPULSE_DASHBOARD_PASSWORD or _TOKEN")
    username: str = Field("roompulse", min_length=1, pattern=r"^[^:]+$",
                          description="user name of HTTP Basic authentication (with the password)")
    password: SecretStr | None = Field(None, description="password of HTTP Basic authentication (browsers)")
    token: SecretStr | None = Field(None, description="bearer token (Authorization: Bearer ...; Prometheus, scripts)")
    db: Path = Field(Path("/var/lib/roompulse-dashboard/history.db"),
                     description="SQLite file of the window history")
    retention_days: float = Field(400.0, gt=0, le=36500,
                                  description="windows older than this are deleted from the history, days")
    topic_root: str = Field("roompulse", min_length=1, pattern=r"^[^#+]+$",
                            description="units are subscribed under <topic_root>/+/...; the units' "
                                        "ROOMPULSE_TOPIC_PREFIX default is roompulse/<device_id>")
    client_id: str = Field("roompulse-dashboard", pattern=r"^[A-Za-z0-9_.-]{1,128}$",
                           description="MQTT client id; fixed, so the broker keeps the session while it is away")
    session_expiry_s: int = Field(7 * 86400, ge=0, le=4294967295,
                                  description="how long the broker keeps the session and queues windows for "
                                              "a stopped dashboard, seconds (MQTT v5 session expiry)")
    chart_hours: float = Field(3.0, gt=0, le=48, description="length of the 'last hours' chart, hours")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value):
        parse_listen(value)
        return value

    @field_validator("password", "token")
    @classmethod
    def _not_blank(cls, value):
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty; leave it unset or give a real secret")
        if value is not None and len(value.get_secret_value()) < 8:
            raise ValueError("is shorter than 8 characters")
        return value

    @property
    def bind(self) -> Listen:
        return parse_listen(self.listen)


@dataclass(frozen=True)
class Config:
    """Everything ``roompulse dashboard`` reads from its settings."""

    broker: BrokerSettings
    dashboard: DashboardSettings


def _describe(exc: ValidationError, model, prefix: str) -> list[str]:
    out = []
    for error in exc.errors():
        loc = error["loc"]
        field = model.model_fields.get(str(loc[0])) if loc else None
        name = prefix + str(loc[0]).upper() if loc else "configuration"
        meaning = f" ({field.description})" if field and field.description else ""
        out.append(f"{name}{meaning}: {error['msg']}")
    return out


def _file_values(env_file: Path | None, model, prefix: str) -> dict[str, str]:
    """The env file's values of ``model``'s fields, read as the service reads its env file."""
    return env_file_values(env_file, {prefix + name.upper(): name for name in model.model_fields})


def load(env_file: Path | None = None, listen: str | None = None) -> Config:
    """Read and check the dashboard's settings.

    Args:
        env_file: file of ``ROOMPULSE_*`` lines; ``None`` uses ``/etc/roompulse/roompulse.env``
            when it exists.
        listen: ``--listen HOST:PORT``; wins over ``ROOMPULSE_DASHBOARD_LISTEN``.

    Raises:
        ConfigError: every invalid variable named; or the env file does not exist or cannot
            be read; or the server would listen on a network address with neither
            ``ROOMPULSE_DASHBOARD_PASSWORD`` nor ``ROOMPULSE_DASHBOARD_TOKEN`` set.
    """
    env_file = env_file_in_force(env_file)
    problems: list[str] = []
    broker = dashboard = None
    try:
        broker = BrokerSettings(_env_file=None, **_file_values(env_file, BrokerSettings, ENV_PREFIX))
    except ValidationError as exc:
        problems += _describe(exc, BrokerSettings, ENV_PREFIX)
    try:
        overrides = {"listen": listen} if listen else {}
        values = _file_values(env_file, DashboardSettings, DASHBOARD_PREFIX)
        dashboard = DashboardSettings(_env_file=None, **{**values, **overrides})
    except ValidationError as exc:
        lines = _describe(exc, DashboardSettings, DASHBOARD_PREFIX)
        if listen:
            lines = [line.replace("ROOMPULSE_DASHBOARD_LISTEN", "--listen") for line in lines]
        problems += lines
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    if not dashboard.bind.loopback and dashboard.password is None and dashboard.token is None:
        raise ConfigError(
            f"refusing to listen on {dashboard.bind} without authentication: it is reachable from the network. "
            "Set ROOMPULSE_DASHBOARD_PASSWORD (browsers, HTTP Basic) or ROOMPULSE_DASHBOARD_TOKEN "
            "(Authorization: Bearer), or listen on 127.0.0.1")
    return Config(broker, dashboard)


def unknown_variables(env_file: Path | None = None) -> list[str]:
    """``ROOMPULSE_DASHBOARD_*`` names in the environment or ``env_file`` (the env file in force,
    :func:`device.config.env_file_in_force`; None for none) that no dashboard setting reads."""
    known = {DASHBOARD_PREFIX + name.upper() for name in DashboardSettings.model_fields}
    names = set(os.environ) | (set(read_env_file(env_file)) if env_file else set())
    return sorted(n for n in names if n.upper().startswith(DASHBOARD_PREFIX) and n.upper() not in known)
