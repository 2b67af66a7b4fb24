"""The TOML configuration file: read by Settings, overridden by the environment, strict."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.config import Settings
from hub.config_file import CONFIG_ENV, ConfigFileError

EXAMPLE = Path(__file__).parents[2] / "deploy" / "hub.toml.example"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hub.toml"
    monkeypatch.setenv(CONFIG_ENV, str(path))
    for name in ("HUB_HTTP_PORT", "HUB_DATABASE_URL", "HUB_MQTT_PROTOCOL", "HUB_TLS_NAMES"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_the_file_sets_what_it_names_and_defaults_stay(config: Path) -> None:
    config.write_text('http_port = 9001\ndatabase_url = "postgresql+psycopg://h@db/hub"\n'
                      'mqtt_protocol = "5"\ntls_names = ["hub.example", "10.0.0.5"]\n'
                      'log_format = "json"\n')
    settings = Settings()
    assert settings.http_port == 9001
    assert settings.database == "postgresql+psycopg://h@db/hub"
    assert settings.mqtt_protocol == "5"
    assert settings.tls_names == ["hub.example", "10.0.0.5"]
    assert settings.log_format == "json"
    assert settings.mqtt_port == 1883  # not in the file: the default


def test_the_environment_overrides_the_file_and_arguments_override_both(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config.write_text("http_port = 9001\nmqtt_keepalive = 40\n")
    monkeypatch.setenv("HUB_HTTP_PORT", "9002")
    assert Settings().http_port == 9002
    assert Settings(mqtt_keepalive=50).mqtt_keepalive == 50
    assert Settings().mqtt_keepalive == 40


def test_a_value_the_setting_refuses_is_refused_from_the_file_too(config: Path) -> None:
    config.write_text("http_port = 70000\n")
    with pytest.raises(ValueError, match="http_port"):
        Settings()


@pytest.mark.parametrize(("text", "message"), [
    ("htp_port = 9001\n", "unknown setting 'htp_port'"),
    ('http_port = 9001\nHUB_LOG_LEVEL = "DEBUG"\nzz = 1\n',
     "unknown setting 'HUB_LOG_LEVEL' \\(and 'zz'\\)"),
    ("http_port = \n", "not TOML"),
])
def test_a_file_with_an_unknown_key_or_no_toml_is_an_error_naming_it(
        config: Path, text: str, message: str) -> None:
    config.write_text(text)
    with pytest.raises(ConfigFileError, match=f"{config}: {message}"):
        Settings()


def test_a_missing_file_is_an_error_not_the_defaults(config: Path) -> None:
    with pytest.raises(ConfigFileError, match=f"no such file: {config}"):
        Settings()


def test_without_a_file_the_environment_alone_configures(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("HUB_HTTP_PORT", "9003")
    assert Settings().http_port == 9003


def test_the_shipped_example_is_a_valid_configuration(config: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"  # the CA file must exist: Settings checks it at once
    ca.write_text("")
    config.write_text(EXAMPLE.read_text().replace("/var/lib/hub/tls/ca.crt", str(ca)))
    settings = Settings()
    assert settings.mqtt_protocol == "5" and settings.mqtt_shared_group
    assert settings.log_format == "json"


def test_hub_up_reads_the_file_given_by_config(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "")  # so the value --config sets is undone after the test
    path = tmp_path / "hub.toml"
    path.write_text(f'data_dir = "{tmp_path}"\nhttp_prot = 1\n')
    result = CliRunner().invoke(app, ["up", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}: unknown setting 'http_prot'" in " ".join(result.output.split())


def test_a_directory_or_a_file_that_is_no_text_is_an_error_naming_it(config: Path) -> None:
    config.mkdir()
    with pytest.raises(ConfigFileError, match="is a directory"):
        Settings()
    config.rmdir()
    config.write_bytes(b'http_port = 8001\n# caf\xe9\n')
    with pytest.raises(ConfigFileError, match="not UTF-8"):
        Settings()


@pytest.mark.parametrize("secret", [
    'mqtt_password = "s3cret"',
    'database_url = "postgresql+psycopg://hub:s3cret@db/hub"',
])
def test_a_file_holding_a_secret_must_be_the_owners_alone(config: Path, secret: str) -> None:
    config.write_text(secret + "\n")
    config.chmod(0o644)
    with pytest.raises(ConfigFileError, match="others may read it") as refused:
        Settings()
    assert "s3cret" not in str(refused.value)
    config.chmod(0o600)
    Settings()  # the owner's alone: read
    config.write_text('database_url = "postgresql+psycopg://hub@db/hub"\n')
    config.chmod(0o644)
    Settings()  # no secret in it: anyone may read it


def test_a_password_in_the_urls_query_is_a_secret_too(config: Path) -> None:
    config.write_text('database_url = "postgresql+psycopg://hub@db/hub?password=s3cret"\n')
    config.chmod(0o644)
    with pytest.raises(ConfigFileError, match="others may read it"):
        Settings()


def test_a_database_url_is_shown_without_its_passwords() -> None:
    shown = Settings(database_url="postgresql+psycopg://hub:s3cret@db/hub?password=q5ecret"
                                  "&sslmode=require").database_shown
    assert "s3cret" not in shown and "q5ecret" not in shown
    assert "db/hub" in shown and "sslmode=require" in shown
