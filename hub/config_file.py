"""The hub's TOML configuration file: where it is, and keys checked against Settings.

``HUB_CONFIG=/etc/hub/hub.toml`` (or ``--config PATH`` on a ``hub`` command, which sets
it for the process and what it starts) names the file. Its keys are the settings'
names (``database_url = "..."``, no ``HUB_`` prefix); the environment overrides it.
A key Settings does not have is an error naming it: a typo must not fall back to a
default in production.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

import typer
from pydantic_settings import BaseSettings, TomlConfigSettingsSource

CONFIG_ENV = "HUB_CONFIG"

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="TOML configuration file; the environment overrides it \\[env HUB_CONFIG]")]


class ConfigFileError(ValueError):
    """The configuration file is missing, not TOML, or names a setting that does not exist."""


def config_path() -> Path | None:
    """The configuration file in force, if any (``HUB_CONFIG``)."""
    value = os.environ.get(CONFIG_ENV, "").strip()
    return Path(value) if value else None


def use_config_file(path: Path | None) -> None:
    """Make ``path`` the configuration file of this process and of the processes it starts."""
    if path is not None:
        os.environ[CONFIG_ENV] = str(path)


# Settings that are secrets: a file holding one must be readable by its owner alone.
_SECRETS = frozenset({"mqtt_password"})
_URLS = frozenset({"database_url", "broker_url"})  # secrets when they carry a password


def _has_password(url: str) -> bool:
    """``user:secret@host``, or libpq's ``?password=secret``."""
    parts = urlsplit(url)
    return bool(parts.password) or "password" in parse_qs(parts.query)


class TomlFile(TomlConfigSettingsSource):
    """pydantic-settings' TOML source, strict: the file must exist and every key be known."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if path.is_dir():
            raise ConfigFileError(f"{CONFIG_ENV}: {path} is a directory, not a TOML file")
        if not path.is_file():
            raise ConfigFileError(f"{CONFIG_ENV}: no such file: {path}")
        try:
            super().__init__(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path}: not TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise ConfigFileError(f"{path}: cannot read it: {exc.strerror}") from None
        secret = sorted(k for k, v in self.toml_data.items() if k in _SECRETS or (
            k in _URLS and isinstance(v, str) and _has_password(v)))
        if secret and path.stat().st_mode & 0o077:
            # As the data directory's secrets are refused when others may read them.
            raise ConfigFileError(
                f"{path} holds {', '.join(secret)} and others may read it (mode "
                f"{path.stat().st_mode & 0o777:o}): chmod 600 it, or move the secret to the "
                f"environment (HUB_{secret[0].upper()})")
        unknown = sorted(set(self.toml_data) - set(settings_cls.model_fields))
        if unknown:
            raise ConfigFileError(f"{path}: unknown setting {unknown[0]!r}"
                                  + (f" (and {', '.join(map(repr, unknown[1:]))})"
                                     if unknown[1:] else ""))
