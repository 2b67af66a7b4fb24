"""Configuration errors name what the user typed (a variable, a flag), never a pydantic field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError
from typer.testing import CliRunner

from hub.cli import app
from hub.config import Settings, env_var, explain


def problems(**env: str) -> list[tuple[str | None, str]]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises((ValidationError, SettingsError)) as caught:
            Settings()
    assert isinstance(caught.value, ValidationError | SettingsError)
    return explain(caught.value)


def test_env_var_is_the_prefixed_field() -> None:
    assert env_var("mqtt_tls_port") == "HUB_MQTT_TLS_PORT"


@pytest.mark.parametrize(("env", "field", "says"), [
    ({"HUB_MQTT_PORT": "abc"}, "mqtt_port", "not a valid integer (got 'abc')"),
    ({"HUB_MQTT_PORT": "70000"}, "mqtt_port", "must be at most 65535"),
    ({"HUB_MQTT_TLS_PORT": "-1"}, "mqtt_tls_port", "must be at least 0"),
    ({"HUB_SECURE_BROKER": "maybe"}, "secure_broker", "not true or false"),
    ({"HUB_SQLITE_SYNCHRONOUS": "fast"}, "sqlite_synchronous", "must be 'OFF', 'NORMAL'"),
    ({"HUB_BROKER_URL": "localhost"}, "broker_url", "must look like mqtt://host:1883"),
    ({"HUB_TLS_NAMES": "hub.local"}, "tls_names", "not valid JSON"),
    ({"HUB_MQTT_TLS_CA": "/no/such/ca.crt"}, "mqtt_tls_ca", "no such file: /no/such/ca.crt"),
    ({"HUB_LOG_LEVEL": "loud"}, "log_level", "must be 'DEBUG', 'INFO'"),
    ({"HUB_DATABASE_URL": "nonsense"}, "database_url", "looks like sqlite:///"),
    ({"HUB_DATABASE_URL": "mysql://u@h/db"}, "database_url", "SQLite or PostgreSQL, not mysql"),
    ({"HUB_DATABASE_URL": "postgres://u@h/db"}, "database_url",
     "as postgresql+psycopg://user@host/db"),
    ({"HUB_DATABASE_URL": "postgresql+psycopg2://u@h/db"}, "database_url",
     "driver is not installed (psycopg2)"),
])
def test_each_problem_names_its_field_in_words(env: dict[str, str], field: str,
                                               says: str) -> None:
    [(named, text)] = problems(**env)
    assert named == field
    assert says in text
    assert "Input should" not in text and "errors.pydantic.dev" not in text


def test_a_secret_is_never_echoed() -> None:
    # A broker URL may carry a password: the problem shows the URL without it.
    [(field, text)] = problems(HUB_BROKER_URL="http://bridge:s3cret@broker.local")
    assert field == "broker_url" and "s3cret" not in text and "broker.local" in text
    [(field, text)] = problems(HUB_MQTT_CLIENT_ID="")
    assert field == "mqtt_client_id" and "at least 1 character" in text


def test_several_problems_are_all_told() -> None:
    told = problems(HUB_MQTT_PORT="x", HUB_HTTP_PORT="y")
    assert {field for field, _ in told} == {"mqtt_port", "http_port"}


runner = CliRunner()


@pytest.mark.parametrize(("env", "args", "says"), [
    ({"HUB_MQTT_PORT": "abc"}, [], "HUB_MQTT_PORT (--mqtt-port): not a valid integer"),
    ({"HUB_BROKER_URL": "nonsense"}, [], "HUB_BROKER_URL (--broker): broker URL must look like"),
    ({}, ["--mqtt-tls-port", "0", "--tls-cert", "/no/cert.pem", "--tls-key", "/no/key.pem"],
     "--tls-cert: no such file: /no/cert.pem"),
    ({"HUB_HTTP_TLS_CERT": "/etc/hostname"}, [], "HUB_HTTP_TLS_KEY (--tls-key)"),
    ({"HUB_WORKER_NAME": "a b"}, [], "HUB_WORKER_NAME: must match"),  # no flag: the variable
])
def test_hub_up_exits_2_naming_the_variable_or_flag(env: dict[str, str], args: list[str],
                                                   says: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["up", "--data-dir", str(tmp_path), *args],
                           env={**env, "COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output and "validation error" not in result.output
    assert not (tmp_path / "hub.db").exists()  # refused before anything was made


def test_other_commands_name_the_variable_alone_when_they_have_no_flag() -> None:
    result = runner.invoke(app, ["status"], env={"HUB_HTTP_PORT": "eighty", "COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    assert "HUB_HTTP_PORT: not a valid integer (got 'eighty')" in result.output


def test_a_database_nobody_answers_at_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """`hub` itself (the console script's main) says it cannot reach the database."""
    import subprocess
    import sys

    from tests.conftest import free_port
    url = f"postgresql+psycopg://hub@127.0.0.1:{free_port()}/hub"
    done = subprocess.run([sys.executable, "-c", "from hub.cli import main; main()", "db",
                           "current", "--database-url", url, "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert "cannot reach the database" in said and "Traceback" not in said, said


def test_the_venue_ca_hub_init_will_make_may_be_named_before_it_exists(tmp_path: Path) -> None:
    # deploy/hub.toml.example names <data_dir>/tls/ca.crt, which `hub init` reading that
    # same file creates: only another missing file is a mistake.
    ca = tmp_path / "tls" / "ca.crt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HUB_DATA_DIR", str(tmp_path))
        patch.setenv("HUB_MQTT_TLS_CA", str(ca))
        assert Settings().mqtt_tls_ca == ca
    [(field, text)] = problems(HUB_DATA_DIR=str(tmp_path),
                               HUB_MQTT_TLS_CA=str(tmp_path / "other-ca.crt"))
    assert field == "mqtt_tls_ca" and "no such file" in text
