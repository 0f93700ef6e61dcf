"""Field configuration: one pydantic-settings class, variables prefixed ``ROOMPULSE_``.

Read from the process environment and from an env file (``--env-file``, default
``/etc/roompulse/roompulse.env`` when it exists); the environment wins over the file.
An invalid value stops start-up with exit code 78 (``EX_CONFIG`` in sysexits.h, which
the systemd unit lists in ``RestartPreventExitStatus``) and a message naming every bad
variable and what it accepts.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from device.envfile import read_env_file

ENV_PREFIX = "ROOMPULSE_"
DEFAULT_ENV_FILE = Path("/etc/roompulse/roompulse.env")
EX_CONFIG = 78
CREDENTIAL_NAME = "mqtt_password"  # systemd LoadCredential=mqtt_password:<file>
# Fewest faces a score may describe without an explicit override: with 2, either person's
# behaviour can be read off the score whenever the other's is known.
SMALL_GROUP_FLOOR = 3


def redact_url(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` URL replaced by ``***``.

    IP cameras are often addressed as ``rtsp://admin:secret@camera/stream``; the password must
    not reach logs, status or ``check-config`` output.
    """
    if "://" not in text:  # every log line passes here: most have no URL at all
        return text
    return _URL_PASSWORD.sub(r"\1***@", text)


# Linear time (issue 12, item 11): a scheme starts only where no scheme character precedes it,
# and the possessive quantifiers never give back what they matched, so no position of a long
# value is scanned more than a few times (the old pattern rescanned the rest of the text from
# every letter: 7.6 s for 40,000 characters).
_URL_PASSWORD = re.compile(r"((?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]*+://[^/\s:@]++:)[^@\s/]*+@")


# MQTT v5 section 1.5.4: a topic is a UTF-8 string with a 2-byte length, so at most 65,535 bytes.
MQTT_TOPIC_MAX_BYTES = 65535
LONGEST_LEAF = "/availability"  # the longest topic under ROOMPULSE_TOPIC_PREFIX (also /engagement, /paused/set)


def topic_problem(value: str, longest_suffix: str) -> str | None:
    """Why ``value`` cannot start MQTT topic names for publishing (None when it can).

    Args:
        value: a topic prefix.
        longest_suffix: the longest text the device appends to it (for the length limit).
    """
    if "+" in value or "#" in value:
        return "must not contain the MQTT wildcards + or # (they are for subscriptions only)"
    if "\0" in value:
        return "must not contain a NUL character"
    if value.startswith("$"):
        return "must not start with $ (topics starting with $ are reserved for the broker, e.g. $SYS)"
    try:
        size = len((value + longest_suffix).encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if size > MQTT_TOPIC_MAX_BYTES:
        return (f"is too long: with {longest_suffix!r} appended it makes a {size}-byte topic, "
                f"MQTT allows at most {MQTT_TOPIC_MAX_BYTES} bytes")
    return None


class ConfigError(Exception):
    """Invalid configuration; ``str()`` names every bad variable. Exit code 78."""


def _hostname() -> str:
    return socket.gethostname().split(".")[0] or "roompulse"


MACHINE_ID = Path("/etc/machine-id")
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def suggest_device_id(value: str) -> str:
    """A valid unit name close to ``value``: lower case, every run of other characters made one
    ``-`` (``"Room 101"`` -> ``"room-101"``, ``"r101.school"`` -> ``"r101-school"``), at most 64."""
    return re.sub(r"[^a-z0-9_-]+", "-", value.strip().lower()).strip("-")[:64] or "roompulse"


def default_device_id(machine_id: Path = MACHINE_ID) -> str:
    """The host name plus 6 hex digits derived from ``/etc/machine-id``, e.g. ``raspberrypi-3f9a1c``.

    Every stock Raspberry Pi OS image is called ``raspberrypi``; the suffix keeps units apart
    (topics, client id). It is a hash of the machine id, not the id itself (machine-id(5):
    do not expose it). Without a readable machine id: the host name alone.
    """
    host = suggest_device_id(_hostname())[:57]
    try:
        ident = machine_id.read_text().strip()
    except (OSError, UnicodeDecodeError):
        ident = ""
    if not ident:
        return host
    return f"{host}-{hashlib.sha256(b'roompulse:' + ident.encode()).hexdigest()[:6]}"


def credential_file() -> Path | None:
    """The systemd credential ``$CREDENTIALS_DIRECTORY/mqtt_password`` (``LoadCredential=``) when
    the service was given one, else None."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(directory) / CREDENTIAL_NAME if directory else None
    return path if path is not None and path.is_file() else None


class _Encrypted(Exception):
    """The TLS key asked for a passphrase."""


def _no_passphrase() -> str:
    raise _Encrypted


def tls_problem(ca: Path | None, cert: Path | None, key: Path | None) -> str | None:
    """What is wrong with the TLS files, loaded with Python's ssl as the MQTT client loads them,
    naming the variable; None when they load. Checked at start-up because an encrypted key would
    make OpenSSL ask for its passphrase on a terminal (or fail each handshake under systemd), and
    a wrong file would only show as a failing handshake.
    """
    import ssl

    context = ssl.create_default_context()
    if ca is not None:
        try:
            context.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            return f"ROOMPULSE_MQTT_TLS_CA: {ca} holds no CA certificate that OpenSSL can read ({exc})"
    if cert is None:
        return None
    try:
        context.load_cert_chain(str(cert), str(key) if key else None, password=_no_passphrase)
    except _Encrypted:
        return (f"ROOMPULSE_MQTT_TLS_KEY: {key or cert} is encrypted with a passphrase, which the service cannot "
                "type: store the key unencrypted (openssl pkey -in KEY -out KEY.plain), readable only by the "
                "service user")
    except ssl.SSLError as exc:
        if key is None:
            return (f"ROOMPULSE_MQTT_TLS_CERT: {cert} holds no key that goes with its certificate: set "
                    f"ROOMPULSE_MQTT_TLS_KEY to the key file ({exc})")
        if "KEY_VALUES_MISMATCH" in str(exc):
            return f"ROOMPULSE_MQTT_TLS_KEY: {key} is not the key of the certificate in ROOMPULSE_MQTT_TLS_CERT ({cert})"
        return f"ROOMPULSE_MQTT_TLS_CERT / ROOMPULSE_MQTT_TLS_KEY: {cert} / {key} cannot be loaded ({exc})"
    return None


class Settings(BaseSettings):
    """Every setting of the appliance; the field name upper-cased and prefixed is the variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False, validate_default=True,
        env_ignore_empty=True,  # VARIABLE= (as in the example file) means the default
    )

    device_id: str = Field(default_factory=default_device_id, pattern=DEVICE_ID_PATTERN,
                           description="unit name used in topics and the MQTT client id (letters, digits, - and _)")
    source: str = Field("picamera2", min_length=1,
                        description="picamera2, a V4L2 index or /dev/video path, an rtsp:// or http:// URL, or a file")
    source_loop: bool = Field(False, description="repeat a file source forever (demos, soak tests)")
    camera_size: str = Field("1280x720", pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$",
                             description="picamera2 main stream size, WIDTHxHEIGHT in pixels")
    # The largest model input (models/README.md): a larger frame would be scaled down to it anyway.
    max_frame_size: str = Field("1920x1088", pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$",
                                description="files and streams with larger frames are scaled down to fit at "
                                            "decode time (aspect kept), WIDTHxHEIGHT in pixels")
    source_timeout_s: float = Field(10.0, gt=0, le=300,
                                    description="open and read timeout of V4L2 devices and streams, seconds")
    stall_s: float = Field(8.0, gt=0, le=3600,
                           description="seconds without a new picture before camera_stalled and a re-open")
    reopen_backoff_max_s: float = Field(60.0, gt=0, le=3600,
                                        description="longest wait between camera re-open attempts, seconds")
    hang_s: float = Field(20.0, gt=0, le=3600,
                          description="a camera call or inference taking longer stops the systemd watchdog pings, seconds")
    mqtt_host: str = Field("", description="broker host name; empty = print payloads to stdout only")
    mqtt_port: int | None = Field(None, ge=1, le=65535, description="broker port (1883, or 8883 with TLS)")
    mqtt_username: str | None = Field(None, description="broker user name")
    mqtt_password: SecretStr | None = Field(None, description="broker password")
    mqtt_password_file: Path | None = Field(None, description="file holding the broker password")
    mqtt_tls_ca: Path | None = Field(None, description="CA certificate file; enables TLS")
    mqtt_tls_cert: Path | None = Field(None, description="client certificate file")
    mqtt_tls_key: Path | None = Field(None, description="client key file")
    mqtt_client_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,128}$",
                                       description="MQTT client id, unique per unit; default roompulse-<device_id>")
    mqtt_reconnect_max_s: float = Field(60.0, ge=1, le=3600,
                                        description="longest wait between connection attempts (backoff doubles from 1 s)")
    mqtt_message_expiry_s: int = Field(0, ge=0, le=4294967295,
                                       description="MQTT v5 message expiry of engagement messages in seconds; 0 = never")
    outbox_max_age_s: float = Field(604800.0, gt=0,
                                    description="queued windows older than this are dropped (counted on status)")
    outbox_max_count: int = Field(20000, ge=1, description="most windows kept queued; the oldest beyond are dropped")
    status_interval_s: float = Field(30.0, gt=0, le=3600, description="status is republished this often, seconds")
    topic_prefix: str | None = Field(None, description="topic prefix, default roompulse/<device_id>")
    window_s: float = Field(60.0, gt=0, le=86400, description="aggregation window in seconds")
    allow_small_groups: bool = Field(
        False, description="explicit override allowing ROOMPULSE_MIN_GROUP_SIZE below 3 (logged at start-up)")
    min_group_size: int = Field(5, ge=1, le=1000,
                                description="fewest faces for which an engagement score is published")
    fps: float = Field(2.0, gt=0, le=60, description="most frames analysed per second")
    yaw_limit_deg: float = Field(30.0, gt=0, le=90, description="facing-front limit on |yaw|, degrees")
    pitch_limit_deg: float = Field(25.0, gt=0, le=90, description="facing-front limit on |pitch|, degrees")
    accelerator: Literal["auto", "cpu", "edgetpu"] = Field("auto", description="inference accelerator")
    # int8 is the default: it keeps the float model's detections on every clip (models/README.md,
    # "Accuracy and speed"); ROOMPULSE_MODEL=yunet_n_float32 selects float.
    model: str = Field("yunet_n_int8",
                       description="model set (yunet_n_int8, yunet_n_float32: size chosen per frame) or one "
                                   "entry of models/manifest.json (e.g. yunet_n_1280x736_int8)")
    threads: int = Field(2, ge=1, le=16, description="interpreter CPU threads")
    # models/README.md, "Choosing the score threshold": the counts on the clips at 0.5-0.9.
    min_score: float = Field(0.7, gt=0, lt=1, description="detection confidence threshold")
    state_dir: Path = Field(Path("/var/lib/roompulse"), description="outbox and state directory")
    ha_discovery: bool = Field(True, description="announce Home Assistant MQTT discovery")
    ha_prefix: str = Field("homeassistant", min_length=1, description="Home Assistant discovery prefix")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")

    @field_validator("device_id", mode="before")
    @classmethod
    def _suggest_name(cls, value):
        if isinstance(value, str) and not re.match(DEVICE_ID_PATTERN, value):
            raise ValueError(f"'{value}' is not a unit name (letters, digits, - and _, at most 64 characters); "
                             f"use '{suggest_device_id(value)}'")
        return value

    @field_validator("mqtt_host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if "://" in value:
            host = urlsplit(value).hostname or "the host"
            raise ValueError(f"{redact_url(value)!r} is a URL; give the broker's host name or address only (e.g. "
                             f"{host!r}), the port in ROOMPULSE_MQTT_PORT and TLS with ROOMPULSE_MQTT_TLS_CA")
        bracketed = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\](?::([0-9]+))?", value)
        if bracketed:
            port = f" and ROOMPULSE_MQTT_PORT={bracketed[2]}" if bracketed[2] else ""
            raise ValueError(f"{value!r}: write an IPv6 address without brackets: "
                             f"ROOMPULSE_MQTT_HOST={bracketed[1]}{port}")
        if re.fullmatch(r"[^:\s]+:[0-9]+", value):
            host, port = value.rsplit(":", 1)
            raise ValueError(f"{value!r} has a port in it: set ROOMPULSE_MQTT_HOST={host} and ROOMPULSE_MQTT_PORT={port}")
        if any(c.isspace() for c in value):
            raise ValueError(f"{value!r} has spaces in it; a host name or address has none")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.upper() if isinstance(value, str) else value

    @field_validator("min_group_size")
    @classmethod
    def _small_groups(cls, value, info):
        # allow_small_groups is declared first, so it is validated (or absent if invalid) here.
        if value < SMALL_GROUP_FLOOR and not info.data.get("allow_small_groups", False):
            raise ValueError(
                f"ROOMPULSE_MIN_GROUP_SIZE={value} is below {SMALL_GROUP_FLOOR}: a score for fewer "
                "people can describe one person; use 3 or more, or set ROOMPULSE_ALLOW_SMALL_GROUPS=true"
            )
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value):
        from device.models import ModelError, known_names, load_manifest

        try:
            known = known_names(load_manifest())
        except ModelError:
            return value  # reported when the model is loaded
        if value not in known:
            raise ValueError(f"unknown model '{value}'; models/manifest.json lists: {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _topics(self):
        from device.discovery import discovery_topic

        if not self.prefix.strip(" /"):
            raise ValueError(f"ROOMPULSE_TOPIC_PREFIX {self.topic_prefix!r} names no topic level: the unit would publish "
                             "on /engagement with no device in the topic; use e.g. roompulse/room-101, or leave it "
                             "empty for roompulse/<device_id>")
        problem = topic_problem(self.prefix, LONGEST_LEAF)
        if problem:
            which = "ROOMPULSE_TOPIC_PREFIX" if self.topic_prefix else "ROOMPULSE_DEVICE_ID (in the default topic prefix)"
            raise ValueError(f"{which} {problem}")
        if self.ha_discovery:
            topic = discovery_topic(self)
            problem = topic_problem(self.ha_prefix, topic[len(self.ha_prefix.rstrip("/")):])
            if problem:
                raise ValueError(f"ROOMPULSE_HA_PREFIX {problem}")
        return self

    @model_validator(mode="after")
    def _hang(self):
        if self.hang_s <= self.source_timeout_s:
            raise ValueError("ROOMPULSE_HANG_S must be larger than ROOMPULSE_SOURCE_TIMEOUT_S "
                             "(a read that times out normally is not a hang)")
        return self

    @property
    def max_frame_wh(self) -> tuple[int, int]:
        """``max_frame_size`` as (width, height) pixels."""
        width, height = self.max_frame_size.split("x")
        return int(width), int(height)

    @property
    def camera_wh(self) -> tuple[int, int]:
        """``camera_size`` as (width, height) pixels."""
        width, height = self.camera_size.split("x")
        return int(width), int(height)

    @model_validator(mode="after")
    def _files_exist(self):
        for name in ("mqtt_password_file", "mqtt_tls_ca", "mqtt_tls_cert", "mqtt_tls_key"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: {path} is not a readable file")
        if (self.mqtt_password is not None or self.mqtt_password_file or credential_file()) and not self.mqtt_username:
            raise ValueError("ROOMPULSE_MQTT_PASSWORD (or _PASSWORD_FILE, or the systemd credential "
                             f"{CREDENTIAL_NAME}) is set but ROOMPULSE_MQTT_USERNAME is empty: the password would "
                             "never be sent; set the user name too")
        if self.mqtt_tls_cert and not self.mqtt_tls_ca:
            raise ValueError("ROOMPULSE_MQTT_TLS_CERT is set without ROOMPULSE_MQTT_TLS_CA: TLS is off, so the client "
                             "certificate would not be used; set the broker's CA file too")
        if self.mqtt_tls_key and not self.mqtt_tls_cert:
            raise ValueError("ROOMPULSE_MQTT_TLS_KEY is set without ROOMPULSE_MQTT_TLS_CERT")
        problem = tls_problem(self.mqtt_tls_ca, self.mqtt_tls_cert, self.mqtt_tls_key)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def client_id(self) -> str:
        """MQTT client id in force: the configured one, else ``roompulse-<device_id>``."""
        return self.mqtt_client_id or f"roompulse-{self.device_id}"

    def password(self) -> str | None:
        """The broker password: ``ROOMPULSE_MQTT_PASSWORD``, else ``ROOMPULSE_MQTT_PASSWORD_FILE``,
        else the systemd credential ``$CREDENTIALS_DIRECTORY/mqtt_password`` (``LoadCredential=``).

        Raises:
            ConfigError: the password file cannot be read (the message names the file, never
                its content).
        """
        if self.mqtt_password is not None:
            return self.mqtt_password.get_secret_value()
        path = self.mqtt_password_file or credential_file()
        if path is None:
            return None
        try:
            return path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the MQTT password file {path}: {type(exc).__name__}") from None

    @property
    def prefix(self) -> str:
        """Topic prefix in force."""
        return (self.topic_prefix or f"roompulse/{self.device_id}").rstrip("/")

    @property
    def port(self) -> int:
        """Broker port in force: the configured one, else 8883 with TLS, else 1883."""
        return self.mqtt_port or (8883 if self.mqtt_tls_ca else 1883)

    def masked(self) -> dict[str, str]:
        """Effective settings as ``{VARIABLE: value}`` with secrets replaced by ``***``."""
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***"
            elif isinstance(value, bool):
                value = "true" if value else "false"  # as the env file writes them, not Python's True
            out[ENV_PREFIX + name.upper()] = "" if value is None else redact_url(str(value))
        return out


def _describe(error: dict) -> str:
    loc = error["loc"]
    name = ENV_PREFIX + str(loc[0]).upper() if loc else "configuration"
    field = Settings.model_fields.get(str(loc[0])) if loc else None
    meaning = f" ({field.description})" if field and field.description else ""
    shown = ""
    if loc and not isinstance(error.get("input"), dict):  # repeat the bad value, secrets masked
        secret = field is not None and field.annotation in (SecretStr, SecretStr | None)
        shown = "=***" if secret else "=" + repr(redact_url(str(error.get("input"))))
    return f"{name}{shown}{meaning}: {error['msg']}"


def unknown_variables(env_file: Path | None = None) -> list[str]:
    """``ROOMPULSE_*`` names in the environment or the env file that no setting reads,
    each with the closest known name when there is one (a misspelling is silently ignored
    otherwise). Names with characters no variable name may hold are reported by
    :func:`device.envfile.problems` instead."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    names = set(os.environ) | (set(read_env_file(env_file)) if env_file else set())
    out = []
    for name in sorted(n for n in names if n.upper().startswith(ENV_PREFIX) and n.upper() not in known):
        close = difflib.get_close_matches(name.upper(), known, n=1)
        shown = name if name.isprintable() else ascii(name)
        out.append(f"{shown} (did you mean {close[0]}?)" if close else shown)
    return out


def env_file_in_force(env_file: Path | None) -> Path | None:
    """The env file that is read: ``env_file`` when given, else :data:`DEFAULT_ENV_FILE` when it
    exists, else None (settings from the environment and defaults only).

    Raises:
        ConfigError: ``env_file`` was given and does not exist.
    """
    if env_file is not None:
        if not Path(env_file).is_file():
            raise ConfigError(f"env file {env_file} does not exist")
        return env_file
    return DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.is_file() else None


def env_file_values(env_file: Path | None, fields: dict[str, str]) -> dict[str, str]:
    """``{field name: value}`` of the settings ``env_file`` gives, to pass to a settings class.

    The file is read as systemd's ``EnvironmentFile=`` reads it (:mod:`device.envfile`: no
    ``${VAR}`` expansion, ``#`` inside a value is kept), not by pydantic-settings' dotenv
    reader. A variable also in the environment is left out (the environment wins), and so is
    ``VARIABLE=`` with nothing after it (the default applies, as ``env_ignore_empty`` does for
    an empty environment variable).

    Args:
        env_file: the file, or ``None`` for none.
        fields: upper-case variable name -> field name, e.g. ``{"ROOMPULSE_MQTT_PORT": "mqtt_port"}``.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        from_file = read_env_file(env_file) if env_file else {}
    except OSError as exc:
        raise ConfigError(f"cannot read env file {env_file}: {exc}") from None
    in_env = {name.upper() for name in os.environ}
    return {fields[k.upper()]: v for k, v in from_file.items()
            if k.upper() in fields and k.upper() not in in_env and v != ""}


def load_settings(env_file: Path | None = None, **overrides) -> Settings:
    """Build the settings from the environment, an env file and explicit overrides.

    Args:
        env_file: file of ``ROOMPULSE_*=value`` lines; ``None`` uses
            ``/etc/roompulse/roompulse.env`` when it exists.
        overrides: field values that win over both (e.g. ``source`` from ``--source``).

    Raises:
        ConfigError: naming every invalid variable and what it accepts; or the env file
            given does not exist.
    """
    env_file = env_file_in_force(env_file)
    values = env_file_values(env_file, {ENV_PREFIX + name.upper(): name for name in Settings.model_fields})
    try:
        return Settings(_env_file=None, **{**values, **overrides})
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
