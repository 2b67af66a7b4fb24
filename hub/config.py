"""The hub's one settings object, read from ``HUB_*`` environment variables and a TOML file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from hub.config_file import TomlFile, config_path

ENV_PREFIX = "HUB_"


class Settings(BaseSettings):
    """Everything that can be configured; flags of ``hub up`` override these."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    data_dir: Path = Field(Path("hub-data"), description="SQLite file and secrets live here")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/hub.db"
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"

    broker_url: str | None = Field(
        None, description="External broker, mqtt://host:port; unset starts the embedded one"
    )
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1883, ge=0, le=65535)
    mqtt_tls_port: int = Field(
        8883, ge=0, le=65535,
        description="Embedded broker: also listen with TLS here, with the venue CA's server "
                    "certificate (<data_dir>/tls); 0: no TLS listener")
    tls_names: list[str] = Field(
        default_factory=list,
        description="More names (DNS or IP) for the broker's certificate, beyond localhost, "
                    "127.0.0.1, ::1 and this host's name; JSON list in the environment")
    mqtt_tls_ca: Path | None = Field(
        None, description="External broker: connect with TLS, trusting this CA file "
                          "(mqtts:// alone trusts the system's CAs)")
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_protocol: Literal["3.1.1", "5"] = "3.1.1"
    mqtt_client_id: str | None = Field(
        None, min_length=1, max_length=128,
        description="The bridge's MQTT client id; unset: derived from the hub's secret and "
                    "HUB_WORKER_NAME, so it is unguessable and the same across restarts")
    worker_name: str = Field(
        "main", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="This hub process among several sharing a broker (its own client id)")
    mqtt_shared_group: str | None = Field(
        None, description="MQTT 5 shared-subscription group, so several hub workers split traffic"
    )
    mqtt_session_expiry: int = Field(
        30, ge=0, le=86_400,
        description="MQTT 5: seconds the broker keeps a worker's session after it drops. A "
                    "worker back within it gets what it took and did not answer; but while "
                    "it lasts the broker queues the worker's share of new taps to it, unseen "
                    "by the others (devices' retries reach them), so keep it near the time a "
                    "restart takes")
    mqtt_keepalive: int = Field(30, ge=5)
    max_clock_skew_seconds: float = Field(
        60.0, gt=0, description="PostgreSQL: refuse to start when this machine's clock is "
                                "further than this from the database's")
    broker_process: bool = Field(
        True, description="Run the embedded broker in a process of its own (both cores)")
    secure_broker: bool = Field(
        True, description="Embedded broker: per-device credentials and topic ACLs (false: "
        "anyone who reaches it may act as any device)")

    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    http_tls_cert: Path | None = Field(
        None, description="Serve the REST API over HTTPS with this certificate (PEM; with "
                          "HUB_HTTP_TLS_KEY)")
    http_tls_key: Path | None = Field(None, description="...and this private key (PEM)")

    bridge_queue_size: int = Field(100_000, ge=1, description="Messages awaiting a decision")
    bridge_batch_size: int = Field(
        64, ge=1, le=10_000, description="Most messages decided in one database transaction"
    )
    bridge_batch_ms: int = Field(
        100, ge=1, le=10_000,
        description="Most time spent deciding one batch before its replies go out")
    dead_letters_kept: int = Field(
        10_000, ge=100, le=10_000_000, description="The newest dead letters kept")
    tap_deadline_ms: int = Field(
        2_000, ge=50, le=600_000,
        description="A tap or payment older than this when its turn comes is answered "
                    "too_late and moves nothing")
    device_clock_skew_ms: int = Field(
        1_000, ge=0, le=60_000,
        description="How far a device's clock may run behind before its taps count as late")
    payment_max_amount: int = Field(
        1_000_000, gt=0, description="Largest single payment, minor units (10,000.00)"
    )
    pin_max_failures: int = Field(5, ge=1, description="Wrong PINs in a row that lock payment")
    pin_hash_time_cost: int = Field(2, ge=1)
    pin_hash_memory_kib: int = Field(19_456, ge=8, description="argon2id memory (OWASP minimum)")
    phone_key_rotation_days: int = Field(90, ge=1, description="A signing key signs this long")
    phone_key_overlap_days: int = Field(
        30, ge=1, description="...and verifies this much longer: at least the longest stay")
    api_auth: bool = Field(
        True, description="Require a bearer token on the REST API (off: anonymous is admin)")
    api_token_minutes: int = Field(60, ge=1, le=24 * 60, description="API token lifetime")
    telemetry_retention_days: int = Field(
        30, ge=1, description="Devices' telemetry older than this is purged (daily)")
    command_queue_minutes: int = Field(
        60, ge=1, description="An automation's command to an offline appliance waits this long")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="How much the hub logs")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        # Now, naming the setting, not as a traceback from the first connection.
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("a database URL looks like sqlite:///path/hub.db or "
                             "postgresql+psycopg://user@host/db") from None
        if url.get_backend_name() in ("postgres", "postgis"):  # libpq's spelling
            raise ValueError("write PostgreSQL's URL as postgresql+psycopg://user@host/db")
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"the hub runs on SQLite or PostgreSQL, not {url.get_backend_name()}")
        if url.get_backend_name() == "postgresql":
            try:
                url.get_dialect().import_dbapi()
            except (ImportError, AttributeError) as exc:
                name = getattr(exc, "name", None) or url.drivername
                raise ValueError(f"PostgreSQL's driver is not installed ({name}): "
                                 f"pip install -e '.[postgres]' and use postgresql+psycopg://"
                                 ) from None
        return value
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object a line (ts, level, logger, message, extras), "
                            "for journald and log shippers")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the TOML file (HUB_CONFIG), then defaults."""
        sources = (init_settings, env_settings, dotenv_settings, file_secret_settings)
        path = config_path()
        return sources if path is None else (*sources, TomlFile(settings_cls, path))

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parts.hostname:
            shown = value if not parts.password else value.replace(parts.password, "***")
            raise ValueError(f"broker URL must look like mqtt://host:1883 or "
                             f"mqtts://host:8883, got {shown!r}")
        return value

    @field_validator("http_tls_cert", "http_tls_key")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")  # now, not at the first connection
        return value

    @field_validator("mqtt_tls_ca")
    @classmethod
    def _check_ca(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # The venue CA under the data directory is made by `hub init` (or the first start),
        # which reads this same configuration: it cannot be required to exist already.
        data_dir = info.data.get("data_dir")
        if value is not None and not value.is_file() and (
                data_dir is None or value != data_dir / "tls" / "ca.crt"):
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.http_tls_cert is None) != (self.http_tls_key is None):
            raise ValueError("HTTPS needs both HUB_HTTP_TLS_CERT (--tls-cert) and "
                             "HUB_HTTP_TLS_KEY (--tls-key)")
        return self

    @property
    def database_shown(self) -> str:
        """The database URL for a message: no password, in the user part or the query."""
        from sqlalchemy.engine import make_url

        url = make_url(self.database)
        query = {k: ("***" if k == "password" else v) for k, v in url.query.items()}
        return url.set(query=query).render_as_string(hide_password=True)

    @property
    def broker_shown(self) -> str:
        """The broker's address for logs and health: ``mqtts://`` when the bridge uses TLS,
        never a password."""
        host, port = self.mqtt_address
        return f"{'mqtts' if self.bridge_tls else 'mqtt'}://{host}:{port}"

    @property
    def embedded_broker(self) -> bool:
        """True when the hub runs its own broker (no external broker configured)."""
        return self.broker_url is None

    @property
    def mqtt_address(self) -> tuple[str, int]:
        """Host and port the bridge connects to."""
        if self.broker_url is None:
            return self.mqtt_host, self.mqtt_port
        parts = urlsplit(self.broker_url)
        assert parts.hostname is not None
        return parts.hostname, parts.port or (8883 if self.bridge_tls else 1883)

    @property
    def bridge_tls(self) -> bool:
        """Does the bridge speak TLS to its broker (an external one: mqtts://, or a CA file)?"""
        if self.broker_url is None:
            return False  # the embedded broker, on this machine: its plain listener
        return self.mqtt_tls_ca is not None or urlsplit(self.broker_url).scheme in ("mqtts",
                                                                                  "ssl")

    @property
    def database(self) -> str:
        """The SQLAlchemy database URL in force."""
        return self.database_url or f"sqlite:///{self.data_dir / 'hub.db'}"


def env_var(field: str) -> str:
    """The environment variable that sets a field of :class:`Settings`."""
    return ENV_PREFIX + field.upper()


# Fields whose value may hold a secret: never echoed in an error.
_SECRET = frozenset({"mqtt_password", "database_url", "broker_url"})


def _in_words(error: dict[str, object]) -> str:
    """One pydantic error as a person would say it, without pydantic's field names."""
    kind, ctx = error["type"], error.get("ctx") or {}
    assert isinstance(ctx, dict)
    match kind:
        case "int_parsing" | "int_type" | "int_from_float":
            return "not a valid integer"
        case "bool_parsing" | "bool_type":
            return "not true or false"
        case "greater_than_equal":
            return f"must be at least {ctx['ge']}"
        case "greater_than":
            return f"must be more than {ctx['gt']}"
        case "less_than_equal":
            return f"must be at most {ctx['le']}"
        case "less_than":
            return f"must be less than {ctx['lt']}"
        case "literal_error":
            return f"must be {ctx['expected']}"
        case "string_too_short":
            return f"must be at least {ctx['min_length']} characters"
        case "string_too_long":
            return f"must be at most {ctx['max_length']} characters"
        case "string_pattern_mismatch":
            return f"must match {ctx['pattern']}"
        case "list_type" | "json_invalid" | "json_type":
            return 'must be a JSON list, e.g. ["hub.example.org"]'
        case "value_error":
            return str(ctx.get("error", error["msg"]))
    text = str(error["msg"])
    return text[:1].lower() + text[1:]


def explain(exc: ValidationError | SettingsError) -> list[tuple[str | None, str]]:
    """What is wrong with a configuration: (the field, or None for several, the problem).

    The field is for the caller to name as its user knows it (``HUB_MQTT_PORT``, a flag);
    the problem is plain words, with the value given when it cannot be a secret.
    """
    if isinstance(exc, SettingsError):  # a list or object in the environment, not JSON
        found = re.search(r'field "(\w+)"', str(exc))
        if found is None:
            return [(None, str(exc))]
        return [(found.group(1), 'not valid JSON; a list is written ["a", "b"]')]
    problems: list[tuple[str | None, str]] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        field = str(loc[0]) if loc else None
        text = _in_words(dict(error))
        given = error.get("input")
        if (field is not None and field not in _SECRET and error["type"] != "value_error"
                and isinstance(given, str | int) and len(str(given)) <= 80):
            text += f" (got {given!r})"
        problems.append((field, text))
    return problems
