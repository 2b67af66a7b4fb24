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


class TomlFile(TomlConfigSettingsSource):
    """pydantic-settings' TOML source, strict: the file must exist and every key be known."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if not path.is_file():
            raise ConfigFileError(f"{CONFIG_ENV}: no such file: {path}")
        try:
            super().__init__(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path}: not TOML: {exc}") from None
        unknown = sorted(set(self.toml_data) - set(settings_cls.model_fields))
        if unknown:
            raise ConfigFileError(f"{path}: unknown setting {unknown[0]!r}"
                                  + (f" (and {', '.join(map(repr, unknown[1:]))})"
                                     if unknown[1:] else ""))
