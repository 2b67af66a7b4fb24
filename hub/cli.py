"""The ``hub`` command: run the hub and administer it."""

from __future__ import annotations

import errno
import getpass
import json
import logging
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hub.config import Settings, env_var, explain
from hub.config_file import ConfigFileError, ConfigOption, use_config_file
from hub.logs import configure_logging
from hub.ports import CannotListen
from hub.secrets import private_dir

app = typer.Typer(help="The venue hub: one identity for a guest, many touch points.",
                  no_args_is_help=True)
console = Console()

# The options most commands share.
DataDir = Annotated[Path | None, typer.Option(
    help="Where the hub keeps its database (SQLite), secrets and TLS files "
         "\\[env HUB_DATA_DIR, default hub-data]")]
DatabaseUrl = Annotated[str | None, typer.Option(
    help="The database, as an SQLAlchemy URL, e.g. postgresql+psycopg://user@host/hub "
         "\\[env HUB_DATABASE_URL, default sqlite:///<data-dir>/hub.db]")]
HttpHost = Annotated[str | None, typer.Option(
    help="The address the REST API listens on \\[env HUB_HTTP_HOST, default 127.0.0.1]")]
HttpPort = Annotated[int | None, typer.Option(
    min=0, max=65535, help="The REST API's port \\[env HUB_HTTP_PORT, default 8000]")]
LogLevel = Annotated[str | None, typer.Option(
    help="debug, info, warning or error \\[env HUB_LOG_LEVEL, default info]")]


# The flag of a command that sets each field of Settings (where it differs from the field).
_FLAGS = {"broker_url": "--broker", "tls_names": "--tls-name", "http_tls_cert": "--tls-cert",
          "http_tls_key": "--tls-key", "secure_broker": "--secure-broker/--open-broker"}


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def _settings(**overrides: Any) -> Settings:
    """The settings: the environment, overridden by the command's flags (``overrides``, by
    field; None: not given). A bad value exits 2 naming the variable or flag it came from."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except (ValidationError, SettingsError) as exc:
        for field, problem in explain(exc):
            if field is None:
                where = ""
            elif overrides.get(field) is not None:  # given as a flag of this command
                where = f"{_flag(field)}: "
            elif field in overrides:  # from the environment; this command has a flag too
                where = f"{env_var(field)} ({_flag(field)}): "
            else:
                where = f"{env_var(field)}: "
            console.print(f"[red]bad configuration:[/red] {escape(where + problem)}",
                          soft_wrap=True)
        raise typer.Exit(2) from None
    except ConfigFileError as exc:  # the file itself: missing, not TOML, an unknown key
        console.print(f"[red]bad configuration:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


def _banner(settings: Settings, demo: dict[str, object] | None) -> None:
    host, port = settings.mqtt_address
    scheme = "https" if settings.http_tls_cert is not None else "http"
    api = f"{scheme}://{settings.http_host}:{settings.http_port}"
    tls = not settings.embedded_broker and settings.bridge_tls
    broker = f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"
    console.print(f"[bold green]hub up[/bold green]  REST {api}/api/v1  docs {api}/docs  "
                  f"MQTT {broker} ({'embedded' if settings.embedded_broker else 'external'})  "
                  f"data {settings.data_dir}")
    if settings.embedded_broker and settings.mqtt_tls_port:
        ca = settings.data_dir / "tls" / "ca.crt"
        console.print(f"MQTT over TLS mqtts://{host}:{settings.mqtt_tls_port}, trusting the "
                      f"venue CA {ca} (hub-sim --ca {ca}; mosquitto_pub --cafile {ca} -p "
                      f"{settings.mqtt_tls_port})", soft_wrap=True)
    # Show the simulator as the user can run it: bare when on PATH, else by its full path.
    sim = "hub-sim" if shutil.which("hub-sim") else str(Path(sys.executable).parent / "hub-sim")
    if settings.http_port != 8000 or settings.http_host != "127.0.0.1" or broker != \
            "mqtt://127.0.0.1:1883":
        sim += f" --api {api} --broker {broker}"  # hub-sim defaults to the default ports
    if demo is not None:
        sheet = settings.data_dir / "demo-provisioning.json"
        if not settings.embedded_broker:
            # The demo's sheet is the embedded broker's; an external one has its own logins.
            sheet = settings.data_dir / "device-sheet.json"
            console.print(f"devices log in to {broker} as `hub provision mosquitto` set it up: "
                          f"`hub provision device-sheet --out {sheet}` writes their logins "
                          f"for hub-sim --provisioning", soft_wrap=True)
            sim += f" --provisioning {sheet}"
        elif settings.secure_broker and \
                settings.data_dir.resolve() != Path("hub-data").resolve():
            sim += f" --provisioning {sheet}"  # hub-sim looks in ./hub-data by itself
        tries = (f"  {sim} tap --device gate-park-in-1 --credential 04A10000000001\n"
                 f"  {sim} tap --device lock-101 --credential pk-guest-01\n"
                 f"  {sim} scenario park-day\n"
                 f"  {sim} scenario resort-spend\n"
                 f"  {sim} load --rate 200 --duration 20\n")
        if settings.secure_broker:
            tries += (f"  {sim} scenario intruder\n"
                      f"  (devices and guests' apps log in with the credentials in {sheet})\n")
        console.print(
            f"[bold]demo venue[/bold] {demo['venue']}: park gates, {demo['rooms']} hotel rooms, "
            f"{demo['guests']} guests ({demo['created']} rows created); a legacy venue: its "
            f"readers may send a band's bare UID")
        if "strict_venue" in demo:
            console.print(
                f"[bold]strict venue[/bold] {demo['strict_venue']}: its gate gate-spa-in-1 takes "
                f"secure bands and signed phone keys only; a bare UID is denied "
                f"insecure_credential")
        watch = (f"  mosquitto_sub -h {host} -p {port} -t 'venuehub/v1/#' -v"
                 if not settings.secure_broker else
                 f"  mosquitto_sub -h {host} -p {port} -u {demo['venue']}.lock-101 "
                 f"-P \"$(python3 -c "
                 f"'import json,sys; print(json.load(open(sys.argv[1]))[\"devices\"][\"lock-101\"]"
                 f"[\"password\"])' {sheet})\" -t 'venuehub/v1/{demo['venue']}/hub/lock-101/#' -v")
        console.print(escape("Try, in another shell:\n" + tries + watch),
                      soft_wrap=True)  # unwrapped: the commands must paste as they are
        # The demo's staff users exist in the demo only; their passwords are published here.
        roles = demo.get("users")
        users = ", ".join(map(str, roles)) if isinstance(roles, list) else "admin"
        login = '{"username":"admin","password":"demo-admin"}'
        console.print(
            f"[bold]demo staff logins[/bold] (this demo only): {users}, each with the password "
            "demo-<role>, e.g. admin / demo-admin. Get a token, then call the API with it:\n"
            + escape(f"  TOKEN=$(curl -s -X POST {api}/api/v1/auth/token -H 'content-type: "
                     f"application/json' -d '{login}' | python3 -c "
                     "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
                     f"  curl -H \"Authorization: Bearer $TOKEN\" '{api}/api/v1/events?limit=5'"),
            soft_wrap=True)  # no line breaks inside the commands: they must paste as they are
    if settings.embedded_broker and not settings.secure_broker:
        console.print(f"[bold red]the embedded broker is OPEN (--open-broker):[/bold red] anyone "
                      f"who reaches {broker} may connect as any device, tap as any gate and read "
                      "every decision, receipt and PIN")
    if not settings.api_auth:
        console.print("[bold red]HUB_API_AUTH is off:[/bold red] anyone who reaches the REST API "
                      "is admin")


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Seed the demo venue (idempotent)")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    broker: Annotated[str | None, typer.Option(
        help="External broker mqtt://host:port (mqtts:// for TLS); none starts the embedded "
             "one \\[env HUB_BROKER_URL]")]
    = None,
    mqtt_host: Annotated[str | None,
                         typer.Option(help="The address the embedded broker listens on "
                                           "\\[env HUB_MQTT_HOST, default 127.0.0.1]")]
    = None,
    mqtt_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Embedded broker: its plain MQTT port \\[env HUB_MQTT_PORT, "
        "default 1883]")] = None,
    http_host: HttpHost = None,
    http_port: HttpPort = None,
    log_level: LogLevel = None,
    secure_broker: Annotated[bool | None, typer.Option(
        "--secure-broker/--open-broker", help="Embedded broker: per-device passwords and topic "
        "ACLs (the default; with --demo the devices' and guests' logins go to "
        "<data-dir>/demo-provisioning.json, where hub-sim finds them), or open to anyone "
        "who reaches it, as any device \\[env HUB_SECURE_BROKER]")] = None,
    scale_guests: Annotated[int, typer.Option(
        min=0, max=10_000_000, help="With --demo: this many more guests, each with a band, a "
        "phone key and a park ticket (for scale measurements)")] = 0,
    scale_devices: Annotated[int, typer.Option(
        min=0, max=1_000_000, help="With --demo: this many more park gates")] = 0,
    mqtt_tls_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Embedded broker: also listen with TLS on this port, with the "
        "venue CA's certificate (<data-dir>/tls); 0: no TLS listener \\[env HUB_MQTT_TLS_PORT, "
        "default 8883]")] = None,
    tls_name: Annotated[list[str] | None, typer.Option(
        "--tls-name", help="Another name (DNS or IP) devices reach the broker by, for its "
        "certificate; repeat for several")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        help="Serve the REST API over HTTPS with this certificate (PEM) "
             "\\[env HUB_HTTP_TLS_CERT]")]
    = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="...and this private key (PEM) \\[env HUB_HTTP_TLS_KEY]")] = None,
    upgrade: Annotated[bool, typer.Option(
        "--upgrade/--no-upgrade", help="Upgrade an older database schema in place at start "
        "(the default), or refuse to start on one (then `hub db upgrade` does it)")] = True,
    config: ConfigOption = None,
) -> None:
    """Run the hub: embedded broker (unless --broker), MQTT bridge and REST API."""
    from hub.server import run

    use_config_file(config)
    settings = _settings(data_dir=data_dir, database_url=database_url, broker_url=broker,
                         mqtt_host=mqtt_host, mqtt_port=mqtt_port, http_host=http_host,
                         http_port=http_port, log_level=log_level, secure_broker=secure_broker,
                         mqtt_tls_port=mqtt_tls_port, tls_names=tls_name or None,
                         http_tls_cert=tls_cert, http_tls_key=tls_key)
    configure_logging(settings, console=console)
    if (scale_guests or scale_devices) and not demo:
        console.print("[red]--scale-guests and --scale-devices need --demo[/red]")
        raise typer.Exit(2)
    with _cannot_start(settings):
        run(settings, demo=demo, scale=(scale_guests, scale_devices), announce=_banner,
            upgrade=upgrade)


@contextmanager
def _cannot_start(settings: Settings) -> Iterator[None]:
    """A start that fails as expected (`hub up`, `hub worker`, `hub api`): one line that says
    why and what to do, exit 2 for what the user must change, 1 for the machine's state.
    With JSON logs the line is a log record too (an ERROR), so the journal stays JSON."""
    import sqlalchemy as sa

    from hub.db import ClockSkew, brief, database_away
    from hub.migrate import SchemaError
    from hub.tls import TlsError

    def fail(reason: str, code: int) -> NoReturn:
        if settings.log_format == "json":
            logging.getLogger("hub").error("cannot start: %s", reason)
        else:
            console.print(f"[red]cannot start:[/red] {escape(reason)}", soft_wrap=True)
        raise typer.Exit(code) from None

    try:
        yield
    except SchemaError as exc:  # a schema it does not know, or an older one and --no-upgrade
        fail(str(exc), 2)
    except CannotListen as exc:
        fail(f"{exc}. {_port_advice(exc)}", 1)
    except OSError as exc:
        fail(str(exc), 1)
    except TlsError as exc:  # a --tls-name no certificate can carry, a broken CA
        fail(f"TLS: {exc}", 2)
    except ClockSkew as exc:
        fail(str(exc), 1)
    except sa.exc.DBAPIError as exc:  # PostgreSQL not up yet (systemd restarts the unit)
        if not database_away(exc):
            raise
        fail(f"the database is out of reach: {brief(exc)}", 1)


def _port_advice(exc: CannotListen) -> str:
    """What to do about a port the hub cannot listen on: which flag moves it."""
    field = exc.listener
    host_field = "http_host" if field == "http_port" else "mqtt_host"
    if not exc.in_use and exc.errno == errno.EADDRNOTAVAIL:
        return (f"Is {exc.host} an address of this machine? Choose another with "
                f"{_flag(host_field)} ({env_var(host_field)}).")
    advice = "Stop what holds it, or c" if exc.in_use else "C"
    advice += f"hoose another port with {_flag(field)} ({env_var(field)})"
    if field == "mqtt_tls_port":
        advice += ", or --mqtt-tls-port 0 for no TLS listener"
    elif field == "mqtt_port":
        advice += ", or run no embedded broker: --broker mqtt://host:port"
    return advice + "."


def _run_part(settings: Settings, *, bridge: bool, api: bool, upgrade: bool) -> None:
    """`hub worker` and `hub api`: one part of the hub, in the foreground."""
    from hub.server import run

    configure_logging(settings, console=console)
    with _cannot_start(settings):
        run(settings, upgrade=upgrade, bridge=bridge, api=api)


@app.command()
def worker(
    broker: Annotated[str | None, typer.Option(
        help="The fleet's MQTT 5 broker, mqtt://host:port (required) \\[env HUB_BROKER_URL]")]
    = None,
    database_url: Annotated[str | None, typer.Option(
        help="The fleet's database, e.g. postgresql+psycopg://... (required) "
        "\\[env HUB_DATABASE_URL]")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Its secrets, the same on every worker \\[env HUB_DATA_DIR]")] = None,
    name: Annotated[str | None, typer.Option(
        help="This worker among the fleet: its own MQTT client id and session "
        "\\[env HUB_WORKER_NAME]")] = None,
    group: Annotated[str | None, typer.Option(
        help="The MQTT 5 shared-subscription group the workers split the taps in; on the "
        "broker it carries a mark derived from the hub's secret, so no other login can join "
        "it \\[env HUB_MQTT_SHARED_GROUP, default hubs]")] = None,
    log_level: LogLevel = None,
    upgrade: Annotated[bool, typer.Option(
        "--upgrade/--no-upgrade", help="Upgrade an older database schema at start, or "
        "refuse to start on one")] = False,
    config: ConfigOption = None,
) -> None:
    """Decide taps: the MQTT bridge alone (no REST API, no embedded broker), one of any
    number of workers sharing an external MQTT 5 broker and one database. Background jobs
    (retention, schedules, the command-queue sweep) run once across the fleet."""
    use_config_file(config)
    settings = _settings(broker_url=broker, database_url=database_url, data_dir=data_dir,
                         worker_name=name, log_level=log_level)
    if settings.embedded_broker or settings.database_url is None:
        console.print("[red]hub worker needs --broker (an MQTT 5 broker) and --database-url "
                      "(the database every worker shares)[/red]")
        raise typer.Exit(2)
    settings = settings.model_copy(update={
        "mqtt_protocol": "5", "mqtt_shared_group": group or settings.mqtt_shared_group or "hubs"})
    _run_part(settings, bridge=True, api=False, upgrade=upgrade)


@app.command("api")
def api_(
    broker: Annotated[str | None, typer.Option(
        help="The workers' MQTT 5 broker, where the API publishes receipts and key material "
        "(required) \\[env HUB_BROKER_URL]")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    name: Annotated[str | None, typer.Option(
        help="This API process: its own MQTT client id (one name per API process) "
        "\\[env HUB_WORKER_NAME]")] = None,
    http_host: HttpHost = None,
    http_port: HttpPort = None,
    log_level: LogLevel = None,
    upgrade: Annotated[bool, typer.Option(
        "--upgrade/--no-upgrade", help="Upgrade an older database schema at start (the "
        "default), or refuse to start on one")] = True,
    config: ConfigOption = None,
) -> None:
    """Serve the REST API alone (no bridge, no embedded broker), next to `hub worker`
    processes on the same database. It publishes what its calls change (receipts to
    guests' apps, the key material offline locks read) on the workers' broker, logged in
    as they are (HUB_MQTT_USERNAME, HUB_MQTT_PASSWORD)."""
    use_config_file(config)
    settings = _settings(broker_url=broker, database_url=database_url, data_dir=data_dir,
                         worker_name=name, http_host=http_host, http_port=http_port,
                         log_level=log_level)
    if settings.embedded_broker:
        console.print("[red]hub api needs --broker (the workers' MQTT 5 broker): receipts "
                      "and revoked phone keys are published there[/red]")
        raise typer.Exit(2)
    settings = settings.model_copy(update={"mqtt_protocol": "5"})
    _run_part(settings, bridge=False, api=True, upgrade=upgrade)


@app.command()
def status(
    api: Annotated[str | None, typer.Option(
        help="The hub's REST API, e.g. http://127.0.0.1:8000 (default: HUB_HTTP_HOST and "
             "HUB_HTTP_PORT)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the health document as JSON")]
    = False,
) -> None:
    """Is the hub deciding taps? Exit 0 if so, 1 if not, 2 if it cannot be reached."""
    import httpx

    if api is None:
        settings = _settings()
        api = f"http://{settings.http_host}:{settings.http_port}"
    url = f"{api.rstrip('/')}/api/v1/health"
    try:
        response = httpx.get(url, timeout=5)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        console.print(f"[red]no answer from {escape(url)}:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    # Deciding is what the exit says, whatever the status code: a 200 that says
    # "degraded" is not deciding.
    ok = response.status_code == 200 and body.get("status") == "ok"
    if as_json:
        console.print_json(data=body)
    else:
        verdict = "[bold green]deciding taps" if ok else "[bold red]NOT deciding taps"
        console.print(f"{verdict}[/]  ({response.status_code})")
        table = Table(show_header=False, box=None)
        for key in ("mqtt", "mqtt_connected", "database", "worker_alive", "worker_deaths",
                    "queue_depth", "oldest_waiting_ms", "last_decision_ms_ago",
                    "tap_deadline_ms", "dead_letters"):
            if key in body:
                table.add_row(key, escape(str(body[key])))
        for worker in body.get("workers") or []:
            table.add_row(f"worker {escape(str(worker.get('name')))}", escape(
                f"{'deciding' if worker.get('deciding') else 'NOT deciding'}, seen "
                f"{worker.get('seen_s_ago')} s ago, queue "
                f"{worker.get('queue_depth')}"))
        console.print(table)
        for problem in body.get("problems", []):
            console.print(f"[red]- {escape(problem)}[/red]")
    raise typer.Exit(0 if ok else 1)


provision_app = typer.Typer(help="Credentials for devices, brokers and secure bands.",
                            no_args_is_help=True)
app.add_typer(provision_app, name="provision")


@provision_app.command("mosquitto")
def provision_mosquitto(
    out_dir: Annotated[Path, typer.Option(help="Where to write passwd and acl (0600)")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    port: Annotated[int, typer.Option(
        min=0, max=65535, help="mosquitto.conf: the plain MQTT listener's port (0: none, "
        "TLS only)")] = 1883,
    tls_port: Annotated[int, typer.Option(
        min=0, max=65535, help="mosquitto.conf: the TLS listener's port (0: none); the venue "
        "CA, the server certificate and its key are copied beside it")] = 8883,
    bind: Annotated[str | None, typer.Option(
        help="mosquitto.conf: the address both listeners bind (default: all)")] = None,
    tls_name: Annotated[list[str] | None, typer.Option(
        "--tls-name", help="A name (DNS or IP) devices reach this Mosquitto by, for its "
        "certificate; repeat for several")] = None,
) -> None:
    """Mosquitto password and ACL files for every registered device and the hub's bridge,
    the venue CA's TLS files, and a mosquitto.conf that uses them."""
    from sqlmodel import Session

    from hub.db import create_db_engine
    from hub.provisioning import BRIDGE_USER, mosquitto_conf, mosquitto_config, write_private
    from hub.secrets import load_or_create
    from hub.tls import TlsError, ensure_tls

    settings = _settings(data_dir=data_dir, database_url=database_url,
                         tls_names=tls_name or None)
    secrets = load_or_create(settings.data_dir)
    with Session(create_db_engine(settings.database)) as session:
        passwd, acl = mosquitto_config(session, secrets)
    write_private(out_dir / "passwd", passwd)
    write_private(out_dir / "acl", acl)
    wrote = [out_dir / "passwd", out_dir / "acl"]
    if tls_port:
        try:
            tls = ensure_tls(settings.data_dir, settings.tls_names)
        except TlsError as exc:
            console.print(f"[red]TLS:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
        # Copies, not links: Mosquitto often runs as its own user, with no way into the
        # hub's 0700 data directory. The key stays 0600: chown it to Mosquitto's user.
        write_private(out_dir / "server.key", tls.server_key.read_text())
        for source, name in ((tls.server_cert, "server.crt"), (tls.ca_cert, "ca.crt")):
            shutil.copyfile(source, out_dir / name)
            wrote.append(out_dir / name)
        wrote.append(out_dir / "server.key")
    write_private(out_dir / "mosquitto.conf",
                  mosquitto_conf(out_dir, port=port, tls_port=tls_port, bind=bind))
    wrote.append(out_dir / "mosquitto.conf")
    console.print(f"wrote {', '.join(map(str, wrote))}: mosquitto -c {out_dir / 'mosquitto.conf'}"
                  f" (password_file, acl_file, allow_anonymous false"
                  f"{', a TLS listener on ' + str(tls_port) if tls_port else ''}). The bridge "
                  f"logs in as {BRIDGE_USER!r}: `hub provision device-sheet --out FILE` "
                  f"writes its password there.", soft_wrap=True)


@provision_app.command("device-sheet")
def provision_device_sheet(
    out: Annotated[Path, typer.Option(help="JSON file to write (0600)")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Each device's broker username/password, the bridge's, and secure bands' keys."""
    from sqlmodel import Session

    from hub.db import create_db_engine
    from hub.phone_keys import jwks, load_keys
    from hub.provisioning import broker_auth, write_sheet
    from hub.secrets import load_or_create

    settings = _settings(data_dir=data_dir, database_url=database_url)
    secrets = load_or_create(settings.data_dir)
    auth = broker_auth(secrets)
    host, port = settings.mqtt_address
    key_file = settings.data_dir / "secrets" / "phone-signing-keys.json"
    # The locks' trust anchor, once `hub up` has made the signing keys.
    anchor = jwks(load_keys(key_file)) if key_file.exists() else None
    broker: dict[str, object] = {"host": host, "port": port, "bridge_user": auth.bridge_user,
                                 "bridge_password": auth.bridge_password}
    ca = settings.data_dir / "tls" / "ca.crt"
    if ca.exists() and settings.mqtt_tls_port:  # what hub-sim needs to speak TLS by itself
        broker |= {"tls_port": settings.mqtt_tls_port, "ca": str(ca.resolve())}
    with Session(create_db_engine(settings.database)) as session:
        write_sheet(out, session, secrets, broker, key_anchor=anchor)
    console.print(f"wrote {out} (0600): keep it like the keys it holds")


@app.command()
def init(data_dir: DataDir = None,
         database_url: DatabaseUrl = None,
         tls_name: Annotated[list[str] | None, typer.Option(
             "--tls-name", help="Another name (DNS or IP) devices reach the broker by, for "
             "its TLS certificate; repeat for several")] = None) -> None:
    """Create the data directory, the secrets (0600), the venue CA and the database tables."""
    from hub.db import create_db_engine, init_db
    from hub.models import utcnow
    from hub.phone_keys import ensure_signing_keys
    from hub.secrets import load_or_create
    from hub.tls import TlsError, certificate_names, ensure_tls

    settings = _settings(data_dir=data_dir, database_url=database_url,
                         tls_names=tls_name or None)
    private_dir(settings.data_dir)
    load_or_create(settings.data_dir)
    try:
        files = ensure_tls(settings.data_dir, settings.tls_names)
    except TlsError as exc:
        console.print(f"[red]TLS:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    init_db(create_db_engine(settings.database))
    # Now, not at the first start: every host copying these secrets signs with one key.
    ensure_signing_keys(settings.data_dir, utcnow(),
                        rotation_days=settings.phone_key_rotation_days,
                        overlap_days=settings.phone_key_overlap_days)
    names = ", ".join(certificate_names(files.server_cert))
    console.print(f"initialised {settings.database_shown}; secrets in "
                  f"{settings.data_dir / 'secrets'} (mode 0600); venue CA {files.ca_cert} "
                  f"(give it to devices), broker certificate for {names}")


ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("verify")
def ledger_verify(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Check every ledger invariant; exit 1 and list them when any is broken."""
    from sqlmodel import Session

    from hub.db import create_db_engine
    from hub.store import money

    settings = _settings(data_dir=data_dir, database_url=database_url)
    if settings.database.startswith("sqlite") and not (settings.data_dir / "hub.db").exists() \
            and settings.database_url is None:
        console.print(f"[red]no database at {settings.data_dir / 'hub.db'}[/red]")
        raise typer.Exit(2)
    engine = create_db_engine(settings.database)
    with Session(engine) as session:
        problems = money.verify(session=session)
        counts = money.counts(session=session)
    engine.dispose()
    for problem in problems:
        console.print(f"[red]✗[/red] {problem}")
    if problems:
        console.print(f"[bold red]{len(problems)} ledger invariant(s) broken[/bold red]")
        raise typer.Exit(1)
    console.print(f"[green]ledger OK[/green]: {counts['transactions']} transactions, "
                  f"{counts['postings']} postings, {counts['accounts']} accounts balance")


@app.command()
def openapi() -> None:
    """Print the REST API's OpenAPI document (JSON)."""
    import sqlalchemy as sa

    from hub.api.main import create_app

    api = create_app(engine=sa.create_engine("sqlite://"), settings=_settings())
    typer.echo(json.dumps(api.openapi(), indent=2))


user_app = typer.Typer(help="Staff users of the REST API.", no_args_is_help=True)
app.add_typer(user_app, name="user")

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # no ":": "guest:<id>" is a guest
_PASSWORD_MIN, _PASSWORD_MAX = 8, 1024  # the API refuses longer ones at login


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER, e.g. in a container
        return "unknown"


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The username (letters, digits, . _ @ -)")],
    role: Annotated[list[str], typer.Option(
        "--role", help="admin, staff, integrator or auditor; repeat for several")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input (else prompt)")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a staff user who logs in to the REST API (POST /api/v1/auth/token)."""
    from hub.db import create_db_engine, init_db, session_scope
    from hub.models import utcnow
    from hub.security import STAFF_ROLES, hash_secret
    from hub.store import errors, events, staff

    if not _USERNAME.fullmatch(name):
        console.print(f"[red]bad username {escape(repr(name))}:[/red] "
                      "1-64 letters, digits, . _ @ -")
        raise typer.Exit(2)
    unknown = sorted(set(role) - STAFF_ROLES)
    if unknown:
        console.print(f"[red]unknown role {', '.join(unknown)}:[/red] "
                      f"one of {', '.join(sorted(STAFF_ROLES))}")
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:  # never echoed
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not _PASSWORD_MIN <= len(password) <= _PASSWORD_MAX:
        console.print(f"[red]the password must be {_PASSWORD_MIN}-{_PASSWORD_MAX} characters[/red]")
        raise typer.Exit(2)
    settings = _settings(data_dir=data_dir, database_url=database_url)
    private_dir(settings.data_dir)
    engine = create_db_engine(settings.database)
    try:
        init_db(engine)
        now = utcnow()
        with session_scope(engine) as session:
            staff.add_staff_user(session=session, username=name,
                                 password_hash=hash_secret(password),
                                 roles=role, now=now)
            events.record_audit(session=session, actor=f"cli:{_os_user()}", roles=[],
                                action="user.add",
                                target=f"user:{name}", detail={"roles": sorted(set(role))},
                                source="cli", at=now)
    except errors.Conflict:
        console.print(f"[red]user {escape(name)} already exists[/red]")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    console.print(f"added {escape(name)} ({', '.join(sorted(set(role)))})")


@user_app.command("list")
def user_list(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List the staff users, their roles and whether they may log in."""
    from hub.db import create_db_engine, init_db, session_scope
    from hub.store import staff

    settings = _settings(data_dir=data_dir, database_url=database_url)
    if settings.database.startswith("sqlite") and settings.database_url is None \
            and not (settings.data_dir / "hub.db").exists():
        console.print(f"[red]no database at {settings.data_dir / 'hub.db'}[/red]")
        raise typer.Exit(2)
    engine = create_db_engine(settings.database)
    try:
        init_db(engine)  # a database from before staff users existed gets the table
        with session_scope(engine) as session:
            users = staff.list_staff_users(session=session)
    finally:
        engine.dispose()
    table = Table("username", "roles", "active", "created")
    for user in users:
        table.add_row(escape(user.username), ", ".join(user.roles), "yes" if user.active else "no",
                      user.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


def _change_user(name: str, data_dir: Path | None, database_url: str | None, *,
                 active: bool | None = None, password: str | None = None) -> None:
    from hub.db import create_db_engine, session_scope
    from hub.models import utcnow
    from hub.security import hash_secret
    from hub.store import events, staff

    settings = _settings(data_dir=data_dir, database_url=database_url)
    _existing_database(settings)
    engine = create_db_engine(settings.database)
    try:
        with session_scope(engine) as session:
            user = staff.find_staff_user(session=session, username=name)
            if user is None:
                console.print(f"[red]no user {escape(name)}[/red]")
                raise typer.Exit(2)
            staff.change_staff_user(session=session, user=user, active=active,
                                    password_hash=hash_secret(password) if password else None)
            detail: dict[str, object] = {"password_changed": True} if password else {}
            if active is not None:
                detail["active"] = active
            events.record_audit(session=session, actor=f"cli:{_os_user()}", roles=[],
                                action="user.change",
                                target=f"user:{name}", detail=detail, source="cli", at=utcnow())
    finally:
        engine.dispose()


@user_app.command("disable")
def user_disable(
    name: Annotated[str, typer.Argument(help="The username")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Stop a user logging in; every token they hold stops at once."""
    _change_user(name, data_dir, database_url, active=False)
    console.print(f"disabled {escape(name)}; their tokens no longer work")


@user_app.command("enable")
def user_enable(
    name: Annotated[str, typer.Argument(help="The username")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Let a disabled user log in again (with a new token)."""
    _change_user(name, data_dir, database_url, active=True)
    console.print(f"enabled {escape(name)}")


@user_app.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="The username")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the new password from standard input")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a user's password; every token they hold stops at once."""
    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else typer.prompt("New password", hide_input=True, confirmation_prompt=True))
    if not _PASSWORD_MIN <= len(password) <= _PASSWORD_MAX:
        console.print(f"[red]the password must be {_PASSWORD_MIN}-{_PASSWORD_MAX} characters[/red]")
        raise typer.Exit(2)
    _change_user(name, data_dir, database_url, password=password)
    console.print(f"changed the password of {escape(name)}; their tokens no longer work")


def _existing_database(settings: Settings) -> None:
    """Exit 2 when the default SQLite file is missing (a typo must not create a new one)."""
    if settings.database.startswith("sqlite") and settings.database_url is None \
            and not (settings.data_dir / "hub.db").exists():
        console.print(f"[red]no database at {settings.data_dir / 'hub.db'}[/red]")
        raise typer.Exit(2)


venue_app = typer.Typer(help="Venues and their security policy.", no_args_is_help=True)
app.add_typer(venue_app, name="venue")


@venue_app.command("policy")
def venue_policy(
    venue_id: Annotated[str, typer.Argument(help="The venue's id")],
    allow_plain_uid: Annotated[bool | None, typer.Option(
        "--allow-plain-uid/--strict", show_default=False,
        help="Accept copyable credentials (bare wristband UIDs, bare phone-key ids) for "
             "legacy readers, or refuse them; without either, show the policy")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show or set a venue's security policy (as PUT /venues/{id}/security-policy)."""
    from hub.db import create_db_engine, session_scope
    from hub.models import Venue, utcnow
    from hub.store import events, rows

    settings = _settings(data_dir=data_dir, database_url=database_url)
    _existing_database(settings)
    engine = create_db_engine(settings.database)
    try:
        with session_scope(engine) as session:
            venue = rows.find(session=session, model=Venue, key=venue_id)
            if venue is None:
                console.print(f"[red]no venue {escape(venue_id)!r}[/red]")
                raise typer.Exit(2)
            if allow_plain_uid is not None and allow_plain_uid != venue.allow_plain_uid:
                rows.update(session=session, row=venue,
                            changes={"allow_plain_uid": allow_plain_uid})
                events.record_audit(session=session, actor=f"cli:{_os_user()}", roles=[],
                                    action="venue.security_policy", target=f"venue:{venue_id}",
                                    detail={"allow_plain_uid": allow_plain_uid}, source="cli",
                                    at=utcnow())
            allowed = venue.allow_plain_uid
    finally:
        engine.dispose()
    console.print(f"venue {escape(venue_id)}: " + (
        "[yellow]accepts bare UIDs and phone-key ids (legacy readers)[/yellow]" if allowed
        else "[green]strict[/green]: signed phone keys and secure bands only"))


telemetry_app = typer.Typer(help="Devices' raw readings and heartbeats.", no_args_is_help=True)
app.add_typer(telemetry_app, name="telemetry")


@telemetry_app.command("purge")
def telemetry_purge(
    days: Annotated[int | None, typer.Option(
        min=0, help="Keep this many days \\[default: HUB_TELEMETRY_RETENTION_DAYS, 30]")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete telemetry older than the retention period (a running hub also does it daily)."""
    from hub.db import create_db_engine, session_scope
    from hub.models import utcnow
    from hub.store.events import purge_telemetry

    settings = _settings(data_dir=data_dir, database_url=database_url)
    _existing_database(settings)
    keep = settings.telemetry_retention_days if days is None else days
    engine = create_db_engine(settings.database)
    try:
        with session_scope(engine) as session:
            gone = purge_telemetry(session=session, now=utcnow(), days=keep)
    finally:
        engine.dispose()
    console.print(f"purged {gone} telemetry rows older than {keep} days")


guest_app = typer.Typer(help="Guests' personal data.", no_args_is_help=True)
app.add_typer(guest_app, name="guest")


@guest_app.command("erase")
def guest_erase(
    guest_id: Annotated[str, typer.Argument(help="The guest's id")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Erase a guest's personal data and revoke their credentials; the ledger stays whole.

    Irreversible. Phone keys revoked here reach offline locks when the hub next
    publishes its revocation list (at start, or at the next revocation).
    """
    from hub.db import create_db_engine, init_db, session_scope
    from hub.models import utcnow
    from hub.privacy import erase_guest
    from hub.store import errors, events

    settings = _settings(data_dir=data_dir, database_url=database_url)
    _existing_database(settings)
    if not yes and not typer.confirm(f"Erase guest {guest_id}'s personal data for good?"):
        raise typer.Exit(1)
    engine = create_db_engine(settings.database)
    try:
        init_db(engine)  # a database from before profiles existed gets their tables
        now = utcnow()
        with session_scope(engine) as session:
            report = erase_guest(session, guest_id=guest_id, now=now)
            # Counts and the pseudonym only: the audit log must not keep what was erased.
            events.record_audit(session=session, actor=f"cli:{_os_user()}", roles=[],
                                action="guest.erase", target=f"guest:{guest_id}",
                                detail=report.audit_detail(), source="cli",
                                at=now)
    except errors.NotFound:
        console.print(f"[red]no guest {escape(repr(guest_id))}[/red]")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    console.print(f"erased guest {escape(guest_id)}: now erased-{report.pseudonym}, "
                  f"{report.credentials_revoked} credential(s) revoked, "
                  f"{report.events_scrubbed} event(s) scrubbed")


db_app = typer.Typer(help="The database's schema: its version, upgrades, new migrations.",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Upgrade the database's schema to this hub's (`hub up` also does it at start).

    All in one transaction: a failure changes nothing. A database an older hub made without
    migrations is recognised by its tables and columns and stamped with that version first;
    one that matches no known version is refused.
    """
    from hub import migrate
    from hub.db import create_db_engine

    settings = _settings(data_dir=data_dir, database_url=database_url)
    _existing_database(settings)
    engine = create_db_engine(settings.database)
    try:
        done = migrate.upgrade(engine)
    except migrate.SchemaError as exc:
        console.print(f"[red]not upgraded:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    before = done.before
    if done.stamped is not None:
        console.print(f"the database had no schema version; its tables and columns are those of "
                      f"revision {done.stamped}: stamped it so")
    if before.state is migrate.State.CURRENT:
        console.print(f"the database is at {done.after}, this hub's schema: nothing to do")
    elif before.state is migrate.State.EMPTY:
        console.print(f"created the schema at {done.after} (every migration from the first)")
    elif (done.stamped or before.revision) == done.after:
        console.print(f"the database is at {done.after}, this hub's schema")
    else:
        console.print(f"upgraded the database from {done.stamped or before.revision} to "
                      f"{done.after}")


@db_app.command("backup")
def db_backup(
    target: Annotated[Path, typer.Argument(help="The new file to write (never overwritten)")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigOption = None,
) -> None:
    """Copy the SQLite database to TARGET while the hub runs (SQLite's online backup).

    PostgreSQL: use pg_dump (see the README's deployment guide).
    """
    from hub.backup import BackupError, backup_sqlite, sqlite_path

    use_config_file(config)
    settings = _settings(data_dir=data_dir, database_url=database_url)
    try:
        size = backup_sqlite(sqlite_path(settings.database), target)
    except BackupError as exc:
        console.print(f"[red]no backup:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    console.print(f"backed up {settings.database_shown} to {target} ({size:,} bytes)")


@db_app.command("current")
def db_current(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show the database's schema version against this hub's.

    Exit 0 when they are the same, 1 when the database needs `hub db upgrade` or is one
    this hub cannot run on.
    """
    from hub import migrate
    from hub.db import create_db_engine

    settings = _settings(data_dir=data_dir, database_url=database_url)
    _existing_database(settings)
    engine = create_db_engine(settings.database, read_only=True)
    try:
        found = migrate.status(engine)
    finally:
        engine.dispose()
    console.print(f"database: {found.revision or 'no version'} ({found.state}); this hub: "
                  f"{found.head}")
    if found.state is migrate.State.EMPTY:
        console.print("no tables yet: `hub up` or `hub db upgrade` creates them")
    elif found.state is not migrate.State.CURRENT:
        console.print(f"[yellow]{escape(migrate.refusal(found))}[/yellow]")
    raise typer.Exit(0 if found.state is migrate.State.CURRENT else 1)


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option(
        "--message", "-m", help="What the migration changes, in a few words")],
) -> None:
    """For developers: write a migration for what hub/models.py changed since the newest one.

    Alembic's autogenerate against a scratch database at the newest revision; the file goes
    to hub/migrations/versions/. Review it: autogenerate cannot see renames, nor fill a new
    NOT NULL column of existing rows.
    """
    from hub import migrate

    written = migrate.new_revision(message)
    if written is None:
        console.print("the models match the newest migration: nothing to write")
        raise typer.Exit(0)
    console.print(f"wrote {written}: review it, then run the migration tests "
                  "(tests/hub/test_migrations.py)")


def main() -> None:
    """The ``hub`` command: the app, with a database it cannot reach said in one line."""
    from sqlalchemy.exc import OperationalError

    try:
        app()
    except OperationalError as exc:
        # The driver's own words (host, port, refused or timed out), not a traceback.
        said = str(exc.orig or exc).strip().splitlines()
        console.print(f"[red]cannot reach the database:[/red] {escape(said[0] if said else '')}"
                      f" (--database-url / HUB_DATABASE_URL)", soft_wrap=True)
        raise SystemExit(2) from None
