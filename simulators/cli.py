"""``hub-sim``: play devices against a running hub (single taps, scenarios, load, a smart
room, a guest's watch).

Exit codes: 0 as expected, 1 when the hub answered but not as expected (an
error, a timeout, a decision that differs from the script), 2 when the hub or
its broker could not be reached (or there was nothing to run against).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from devices.client import DeviceClient, HubError, LoginRefused, NoReply, credential_from_text
from devices.contract import LineItem, PaymentRequest, utcnow
from devices.topics import valid_id
from simulators.appliances import Note, Room, Watch
from simulators.bench import (
    BenchOptions,
    brokers_for,
    fleet_options,
    mix_named,
    parse_rates,
    render,
    run_bench,
    write_json,
)
from simulators.live import (
    MAX_BPM,
    MIN_BPM,
    Notes,
    clock,
    describe,
    parse_bpms,
    parse_workout,
    readings,
    watch_device_id,
)
from simulators.load import render_report, run_load
from simulators.phone_tap import tap_with_phone
from simulators.readers import (
    DEFAULT_MQTTS_PORT,
    Broker,
    ReaderPool,
    connect_device,
    items_total,
    parse_broker_url,
    parse_item,
    payment_request,
)
from simulators.rest import HubApi, HubApiError, HubUnreachable
from simulators.scenarios import SCENARIOS, Run, Scenario
from simulators.scenarios.runner import EXIT_UNREACHABLE, play
from simulators.sheet import Sheet, SheetError, load_sheet

app = typer.Typer(
    name="hub-sim", help="Simulated gates, locks, wristbands and phone keys for a venue hub.",
    no_args_is_help=True, add_completion=False,
)
scenario_app = typer.Typer(help="Scripted journeys; exit 1 when the hub strays from the script.",
                           no_args_is_help=True)
app.add_typer(scenario_app, name="scenario")

out = Console()
err = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class Settings:
    """The global options, shared by every command."""

    api: str
    broker: Broker
    venue: str
    user: str = "admin"
    password: str = field(default="demo-admin", repr=False)
    token: str | None = field(default=None, repr=False)
    sheet_path: Path | None = None  # --provisioning, or where `hub up --demo` writes it

    def hub_api(self) -> HubApi:
        """A REST client that logs in (once, at its first call) unless a token was given."""
        return HubApi(self.api, token=self.token, username=self.user, password=self.password)


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class AccountOption(StrEnum):
    AUTO = "auto"
    WALLET = "wallet"
    FOLIO = "folio"


def _broker(value: str) -> Broker:
    try:
        return parse_broker_url(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.callback()
def main(
    ctx: typer.Context,
    api: Annotated[str, typer.Option(envvar="HUB_SIM_API", help="The hub's REST address.")] = (
        "http://127.0.0.1:8000"
    ),
    broker: Annotated[
        str, typer.Option(envvar="HUB_SIM_BROKER", help="The MQTT broker, mqtt://host:port.")
    ] = "mqtt://127.0.0.1:1883",
    venue: Annotated[str, typer.Option(envvar="HUB_SIM_VENUE", help="The venue id.")] = (
        "demo-resort"
    ),
    user: Annotated[str, typer.Option(
        envvar="HUB_SIM_USER", help="Staff user to log in to the REST API as (the demo's admin).",
    )] = "admin",
    password: Annotated[str, typer.Option(
        envvar="HUB_SIM_PASSWORD", show_default=False,
        help="Their password; default the demo's (demo-admin). Prefer the variable: "
             "a flag shows in ps.",
    )] = "demo-admin",
    token: Annotated[str | None, typer.Option(
        envvar="HUB_SIM_TOKEN", show_default=False,
        help="A bearer token to use instead of logging in.",
    )] = None,
    provisioning: Annotated[Path | None, typer.Option(
        "--provisioning", envvar="HUB_SIM_PROVISIONING", show_default=False,
        help="The provisioning sheet `hub up --demo` writes (devices' and guests' broker "
             "logins, secure bands' keys); default: hub-data/demo-provisioning.json (or under "
             "$HUB_DATA_DIR) when it exists. Without one, devices connect as --broker says.",
    )] = None,
    ca: Annotated[Path | None, typer.Option(
        "--ca", envvar="HUB_SIM_CA", show_default=False,
        help="Connect to the broker with TLS, trusting this CA file (the venue's: "
             "<data-dir>/tls/ca.crt). Port: --broker's when given, else the provisioning "
             "sheet's TLS port, else 8883. (--broker mqtts://... alone takes the sheet's CA.)",
    )] = None,
) -> None:
    """Simulated devices for a venue hub."""
    # Given (flag or variable) or hub-sim's default: with TLS, the default port is not 1883.
    # (By name: typer 0.29 vendors click, and its enum is private to it.)
    source = ctx.get_parameter_source("broker")
    given = source is not None and source.name != "DEFAULT"
    sheet_path = provisioning or default_sheet()
    sheet = None if provisioning is None and not sheet_path.exists() else _sheet_or_warn(
        sheet_path)
    reached = _with_tls(_with_logins(_broker(broker), sheet), sheet, ca=ca,
                        mqtts=broker.strip().startswith("mqtts://"), port_given=given)
    ctx.obj = Settings(api=api, broker=reached, venue=venue, user=user, password=password,
                       token=token, sheet_path=sheet_path)


def default_sheet() -> Path:
    """Where `hub up --demo` writes its sheet when run from here with default settings."""
    return Path(os.environ.get("HUB_DATA_DIR") or "hub-data") / "demo-provisioning.json"


def _sheet_or_warn(path: Path) -> Sheet | None:
    """The sheet at ``path``; None, with a warning, when it is missing."""
    sheet = _read_sheet(path, missing_ok=True)
    if sheet is None:
        # Not fatal here: a command that needs no login (or a scenario that says what
        # it needs, as intruder does) still runs; a closed broker will refuse the rest.
        err.print(f"[yellow]no provisioning sheet at {escape(str(path))}:[/] devices connect "
                  "as --broker says")
    return sheet


def _with_tls(broker: Broker, sheet: Sheet | None, *, ca: Path | None, mqtts: bool,
              port_given: bool) -> Broker:
    """The broker reached over TLS when told so (``--ca``, or an ``mqtts://`` URL), trusting
    ``ca`` or else the sheet's CA; plain TCP otherwise, whatever the sheet offers."""
    if ca is None and not mqtts:
        return broker
    ca = ca or (sheet.broker_ca if sheet is not None else None)
    if ca is None:
        raise typer.BadParameter(f"TLS ({broker} with mqtts) needs the CA to trust: "
                                 "--ca <data-dir>/tls/ca.crt", param_hint="--ca")
    if not ca.is_file():
        raise typer.BadParameter(f"no CA file at {ca}", param_hint="--ca")
    port = broker.port
    if not port_given:
        port = sheet.broker_tls_port if sheet is not None and sheet.broker_tls_port else (
            DEFAULT_MQTTS_PORT)
    return replace(broker, port=port, tls_ca=ca)


def _with_logins(broker: Broker, sheet: Sheet | None) -> Broker:
    """The broker, with every device's and guest's login from ``sheet`` (when there is one:
    without, an open broker, or logins in the broker URL)."""
    if sheet is None:
        return broker
    return replace(broker,
                   logins={d: (login.username, login.password)
                           for d, login in sheet.devices.items()},
                   guest_logins={g: (login.username, login.password)
                                 for g, login in sheet.guests.items()})


R = TypeVar("R")


def _timed(send: Callable[[], R], client: DeviceClient) -> tuple[R, float]:
    """Send, wait for the hub's answer and time it; exit 1 on no answer or a refusal."""
    try:
        started = time.perf_counter()
        answer = send()
        return answer, (time.perf_counter() - started) * 1000
    except NoReply as exc:
        err.print(f"[bold red]no decision:[/] {exc}")
        raise typer.Exit(1) from None
    except HubError as exc:
        err.print(f"[bold red]hub error:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        client.close()


@app.command()
def tap(
    ctx: typer.Context,
    device: Annotated[str, typer.Option("--device", "-d", help="The reader to tap at.")],
    credential: Annotated[
        str, typer.Option("--credential", "-c", help="A hex UID (wristband) or a phone key id.")
    ],
    direction: Annotated[
        Direction | None, typer.Option(help="For readers that serve both ways.")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for the decision (and, at least "
                            "5, for the broker to take the reader's login).")
    ] = 5.0,
) -> None:
    """Tap one credential at one reader and print the hub's decision."""
    settings: Settings = ctx.obj
    cred = credential_from_text(credential)
    try:
        client = connect_device(settings.venue, device, settings.broker, max(5.0, timeout))
    except OSError as exc:
        err.print(broker_problem(settings.broker, exc))
        raise typer.Exit(EXIT_UNREACHABLE) from None
    decision, ms = _timed(lambda: client.tap(
        cred, direction=direction.value if direction else None, timeout=timeout), client)
    style = "bold green" if decision.outcome == "allow" else "bold red"
    out.print(
        f"[{style}]{decision.outcome.upper()}[/] {decision.reason.value}  "
        f'"{decision.text}"  guest: {decision.guest_name or "-"}  '
        f"zone: {decision.zone_id or '-'}  {ms:.1f} ms"
    )


@app.command()
def phone(
    ctx: typer.Context,
    guest: Annotated[str, typer.Option("--guest", "-g", help="The guest whose phone taps.")],
    device: Annotated[str, typer.Option("--device", "-d", help="The door lock to tap at.")],
    credential: Annotated[str | None, typer.Option(
        "--credential", "-c", show_default=False,
        help="The phone-key credential's id (phone-guest-01, not its identifier "
             "pk-guest-01); default: the guest's active phone key.",
    )] = None,
    guest_token: Annotated[str | None, typer.Option(
        envvar="HUB_SIM_GUEST_TOKEN", show_default=False,
        help="The guest app's API token; default: staff (--user) ask for one "
             "(POST /guests/{id}/token).",
    )] = None,
    direction: Annotated[
        Direction | None, typer.Option(help="For readers that serve both ways.")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for the decision.")
    ] = 5.0,
) -> None:
    """Tap a guest's phone at a lock: a new phone key pair, a key the hub signs for it,
    the lock's challenge and the phone's proof; print the hub's decision."""
    settings: Settings = ctx.obj
    try:
        with settings.hub_api() as staff:
            token = guest_token or staff.guest_token(guest)
        guest_app = HubApi(settings.api, token=token)
    except HubUnreachable as exc:
        err.print(f"[bold red]hub unreachable:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except HubApiError as exc:
        err.print(f"[bold red]refused:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    try:
        client = connect_device(settings.venue, device, settings.broker)
    except OSError as exc:
        guest_app.close()
        err.print(broker_problem(settings.broker, exc))
        raise typer.Exit(EXIT_UNREACHABLE) from None
    try:
        done, _ = _timed(lambda: tap_with_phone(
            guest_app, client, guest_id=guest, credential_id=credential,
            direction=direction.value if direction else None, timeout=timeout), client)
    except HubUnreachable as exc:
        err.print(f"[bold red]hub unreachable:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except HubApiError as exc:
        err.print(f"[bold red]refused:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    finally:
        guest_app.close()
    decision = done.decision
    out.print(f"key {done.issued.jti} of {done.credential_id} (zones "
              f"{', '.join(done.issued.zones)}), challenge {done.challenge}")
    style = "bold green" if decision.outcome == "allow" else "bold red"
    out.print(
        f"[{style}]{decision.outcome.upper()}[/] {decision.reason.value}  "
        f'"{decision.text}"  guest: {decision.guest_name or "-"}  '
        f"zone: {decision.zone_id or '-'}  {done.tap_ms:.1f} ms"
    )


def _items(values: list[str] | None) -> list[LineItem]:
    try:
        return [parse_item(text) for text in values or []]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--item") from None


def _merchant_of(settings: Settings, device: str) -> str:
    """The merchant a terminal takes payments for, from ``GET /devices/{device}``."""
    try:
        with settings.hub_api() as api:
            merchant = api.device(device).merchant_id
    except HubUnreachable as exc:
        err.print(f"[bold red]hub unreachable[/] (to look up the merchant): {exc}")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except HubApiError as exc:
        err.print(f"[bold red]cannot look up the merchant of {device}:[/] {exc}; "
                  "pass --merchant")
        raise typer.Exit(1) from None
    if merchant is None:
        err.print(f"[bold red]{device} has no merchant[/] (not a payment terminal?); "
                  "pass --merchant")
        raise typer.Exit(1)
    return merchant


@app.command()
def pay(
    ctx: typer.Context,
    device: Annotated[str, typer.Option("--device", "-d", help="The terminal to pay at.")],
    credential: Annotated[
        str, typer.Option("--credential", "-c", help="A hex UID (wristband) or a phone key id.")
    ],
    amount: Annotated[int, typer.Option(min=1, help="Integer minor units (cents).")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")] = "USD",
    merchant: Annotated[
        str | None,
        typer.Option(help="Default: the terminal's merchant (GET /devices/{device})."),
    ] = None,
    pin: Annotated[str | None, typer.Option(help="The guest's PIN, 4-8 digits.")] = None,
    account: Annotated[
        AccountOption, typer.Option(help="Which of the payer's accounts to charge.")
    ] = AccountOption.AUTO,
    key: Annotated[
        str | None,
        typer.Option(help="Idempotency key; reuse one to retry the same purchase. "
                          "Default: a new one."),
    ] = None,
    item: Annotated[
        list[str] | None,
        typer.Option("--item", help="A line item name:quantity:unit_amount (repeatable); "
                                    "the items must add up to the amount."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for the decision.")
    ] = 5.0,
) -> None:
    """Charge a credential at a terminal and print the hub's decision (exit 0 on any decision)."""
    settings: Settings = ctx.obj
    items = _items(item)
    if items and items_total(items) != amount:
        raise typer.BadParameter(
            f"the items add up to {items_total(items)}, not {amount}", param_hint="--amount"
        )
    merchant_id = merchant or _merchant_of(settings, device)
    request = _payment_request(credential, amount=amount, currency=currency,
                               merchant_id=merchant_id, key=key, items=items, pin=pin,
                               account=account)
    try:
        terminal = connect_device(settings.venue, device, settings.broker)
    except OSError as exc:
        err.print(broker_problem(settings.broker, exc))
        raise typer.Exit(EXIT_UNREACHABLE) from None
    decision, ms = _timed(lambda: terminal.pay(request, timeout=timeout), terminal)
    style = "bold green" if decision.outcome == "approve" else "bold red"
    details = [f"{decision.amount} {decision.currency}", f"merchant {merchant_id}"]
    if decision.account:
        details.append(f"account {decision.account}")
    if decision.balance_after is not None:
        details.append(f"balance {decision.balance_after}")
    details.append(f"txn {decision.transaction_id or '-'}")
    details.append(f"key {decision.idempotency_key}")
    out.print(
        f"[{style}]{decision.outcome.upper()}[/] {decision.reason.value}  "
        f'"{decision.text}"  ' + "  ".join(details) + f"  {ms:.1f} ms"
    )


def _payment_request(
    credential: str, *, amount: int, currency: str, merchant_id: str, key: str | None,
    items: list[LineItem], pin: str | None, account: AccountOption,
) -> PaymentRequest:
    """The request ``pay`` sends; a usage error (exit 2) when the contract refuses it."""
    try:
        return payment_request(
            credential_from_text(credential), amount=amount, currency=currency,
            merchant_id=merchant_id, idempotency_key=key, items=items, pin=pin,
            account=account.value,
        )
    except ValidationError as exc:
        problems = "; ".join(
            (".".join(map(str, e["loc"])) + ": " if e["loc"] else "") + e["msg"]
            for e in exc.errors()
        )
        raise typer.BadParameter(problems) from None


def _scenario_command(name: str, scenario: Scenario) -> None:
    def command(
        ctx: typer.Context,
        timeout: Annotated[
            float, typer.Option(min=0.1, help="Seconds to wait per decision (and, at least 5, "
                                "for the broker to take each reader's login).")
        ] = 5.0,
        within: Annotated[
            float, typer.Option(min=0.01, help="Seconds a reaction may take after the decision "
                                "that causes it (room-welcome: the room's welcome).")
        ] = 1.0,
        provisioning: Annotated[Path | None, typer.Option(
            envvar="HUB_SIM_PROVISIONING", show_default=False,
            help="The provisioning sheet `hub up --demo` writes (device broker logins, "
                 "secure bands' keys, the key anchor); read by the intruder scenario. "
                 "Default: hub-sim's --provisioning (hub-data/demo-provisioning.json, or "
                 "under $HUB_DATA_DIR).",
        )] = None,
    ) -> None:
        settings: Settings = ctx.obj
        # Given after `scenario <name>`, or before it (as `hub up --demo` prints the command).
        provisioning = provisioning or settings.sheet_path
        with settings.hub_api() as api, ReaderPool(
                settings.venue, settings.broker, connect_timeout=max(5.0, timeout),
                guest_login=api.guest_broker_login) as readers:
            run = Run(api=api, readers=readers, venue=settings.venue, timeout=timeout,
                      within=within, provisioning=provisioning)
            code = play(name, scenario, run, out)
        raise typer.Exit(code)

    command.__doc__ = scenario.__doc__
    scenario_app.command(name)(command)


for _name, _scenario in SCENARIOS.items():
    _scenario_command(_name, _scenario)


@app.command()
def load(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option(min=0.1, help="Taps per second, over all devices.")],
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds of sending.")],
    devices: Annotated[int, typer.Option(min=1, help="Door locks to play (one client each).")] = 10,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for late replies.")
    ] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Open-loop taps at door locks by guests of those rooms; every tap should be allowed."""
    settings: Settings = ctx.obj
    try:
        with settings.hub_api() as api:
            report = run_load(
                api, settings.venue, settings.broker, rate=rate, duration=duration,
                devices=devices, timeout=timeout, log=None if as_json else err,
            )
    except HubUnreachable as exc:
        err.print(f"[bold red]hub unreachable:[/] {exc}")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except HubApiError as exc:
        err.print(f"[bold red]the hub refused a REST call:[/] {exc}")
        raise typer.Exit(1) from None
    except LookupError as exc:
        err.print(f"[bold red]nothing to load:[/] {exc}")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except OSError as exc:
        err.print(broker_problem(settings.broker, exc))
        raise typer.Exit(EXIT_UNREACHABLE) from None
    if as_json:
        print(json.dumps(asdict(report), indent=2))
    else:
        render_report(report, out)
    raise typer.Exit(1 if report.errors else 0)


class BenchBrokers(StrEnum):
    EMBEDDED = "embedded"
    MOSQUITTO = "mosquitto"
    BOTH = "both"


class BenchMix(StrEnum):
    REALISTIC = "realistic"
    LOCKS = "locks"


@app.command(epilog="It starts (and stops) the hub, the echo and, for Mosquitto, the broker "
                     "itself: the global --api and --broker are not used. A fleet (--workers) "
                     "runs on Mosquitto alone; --broker-kind both means Mosquitto there. Exit "
                     "0 when it ran, 1 when a process it started died under the load, 2 when "
                     "something could not be started.")
def bench(
    ctx: typer.Context,
    broker_kind: Annotated[BenchBrokers, typer.Option(
        help="The hub's embedded broker, a Mosquitto the bench starts, or both in turn.")
    ] = BenchBrokers.BOTH,
    devices: Annotated[int, typer.Option(
        min=1, max=500, help="Device connections (one client each), for the echo and the hub.")
    ] = 50,
    mix: Annotated[BenchMix, typer.Option(
        help="realistic: park gates in and out, rides, room doors, payments, unknown and lost "
             "bands; locks: guests at their own room locks only.")] = BenchMix.REALISTIC,
    rates: Annotated[str, typer.Option(
        help="Open-loop rates to run, messages/s, comma-separated.")] = "200,500,1000,2000",
    seconds: Annotated[float, typer.Option(min=0.1, help="Seconds of sending per rate.")] = 5.0,
    sequential: Annotated[int, typer.Option(
        min=0, help="Round trips one at a time (0: skip).")] = 200,
    burst: Annotated[int, typer.Option(
        min=0, help="Messages published at once (0: skip).")] = 5000,
    timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds after which a message without a reply counts as lost.")] = 10.0,
    burst_timeout: Annotated[float, typer.Option(
        min=0.1, help="The same for the burst.")] = 120.0,
    search_steps: Annotated[int, typer.Option(
        min=0, help="Extra runs bisecting between the last rate without errors and the "
                    "first with.")] = 3,
    seed: Annotated[int, typer.Option(help="Seeds the traffic mix.")] = 1,
    json_out: Annotated[Path, typer.Option(help="Where to write every figure as JSON.")] = Path(
        "bench-results.json"),
    mosquitto: Annotated[str | None, typer.Option(
        show_default=False, help="The mosquitto binary (default: on PATH, or /usr/sbin).")
    ] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, max=32, show_default=False,
        help="Measure a fleet as deployed: this many `hub worker` processes (a shared "
             "subscription) and one `hub api`, on Mosquitto and --database-url (default: "
             "one `hub up --demo` process on SQLite).")] = None,
    database_url: Annotated[str | None, typer.Option(
        show_default=False,
        help="With --workers (and required by it): the fleet's database, e.g. "
             "postgresql+psycopg://hub@127.0.0.1:5432/bench, best an empty one; the bench "
             "seeds the demo venue into it and registers its devices there. It does not start "
             "a PostgreSQL itself.")] = None,
) -> None:
    """Measure the hub against a bare MQTT echo on the same broker, under the same load."""
    settings: Settings = ctx.obj
    try:
        rate_list = parse_rates(rates)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rates") from None
    try:
        brokers = fleet_options(brokers_for(broker_kind.value), workers, database_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--workers") from None
    options = BenchOptions(
        brokers=brokers, devices=devices, mix=mix_named(mix.value),
        rates=rate_list, seconds=seconds, sequential=sequential, burst=burst, timeout=timeout,
        burst_timeout=burst_timeout, search_steps=search_steps, seed=seed,
        venue=settings.venue, user=settings.user, password=settings.password,
        mosquitto=mosquitto, workers=workers, database_url=database_url,
    )
    # SIGTERM (``timeout``, a service manager) stops like Ctrl-C: the bench's finally blocks
    # stop its children, which run in their own sessions and would otherwise outlive it.
    with _sigterm_stops():
        report, code = run_bench(options, err)
    report["json_out"] = str(json_out.resolve())
    write_json(report, json_out)
    render(report, out)
    out.print(f"figures in {escape(str(json_out))}", highlight=False)
    raise typer.Exit(code)


# ------------------------------------------------------------------ smart rooms and watches

ProvisioningOption = Annotated[Path | None, typer.Option(
    envvar="HUB_SIM_PROVISIONING", show_default=False,
    help="The provisioning sheet `hub up --demo` writes: each device logs "
         "in to the broker with its own credentials from it.",
)]


def _device_logins(path: Path | None, broker: Broker) -> dict[str, tuple[str, str]]:
    """Device id -> (username, password) from a provisioning sheet; without one, those of
    the global --provisioning (or the default sheet)."""
    if path is None:
        return dict(broker.logins)
    sheet = _read_sheet(path, missing_ok=False)
    assert sheet is not None
    return {device: (login.username, login.password) for device, login in sheet.devices.items()}


def _read_sheet(path: Path, *, missing_ok: bool) -> Sheet | None:
    """The provisioning sheet at ``path``; None when missing and ``missing_ok``; else a
    BadParameter saying what is wrong (never a secret)."""
    try:
        return load_sheet(path)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise typer.BadParameter(f"no provisioning sheet at {path}",
                                 param_hint="--provisioning") from None
    except PermissionError:
        raise typer.BadParameter(f"cannot read {path} (it is 0600: run as the hub's user)",
                                 param_hint="--provisioning") from None
    except (SheetError, OSError) as exc:
        raise typer.BadParameter(f"{path} is not a provisioning sheet: {exc}",
                                 param_hint="--provisioning") from None


def _line(device: str, text: str, *, at: str | None = None, style: str = "") -> None:
    """One line of a running appliance's log: time, device, what."""
    what = f"[{style}]{escape(text)}[/]" if style else escape(text)
    out.print(f"[dim]{at or clock(utcnow())}[/] [cyan]{escape(device):<16}[/] {what}",
              soft_wrap=True, highlight=False)


def _show(note: Note) -> None:
    style = {"obeyed": "green", "rejected": "bold red", "changed": ""}[note.what]
    _line(note.device_id, describe(note), at=clock(note.at), style=style)


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM (a service manager, ``timeout``) stops like Ctrl-C: the devices go offline
    cleanly and the summary is printed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def broker_problem(broker: object, exc: OSError) -> str:
    """What went wrong with the broker, for the console: refused login or unreachable."""
    if isinstance(exc, LoginRefused):
        if not getattr(broker, "logins", None):  # no sheet was read: nobody to log in as
            return (f"[bold red]the MQTT broker at {broker} refused the login:[/] "
                    f"{escape(str(exc))}: it is closed, and no provisioning sheet gave the "
                    f"devices' logins (run hub-sim where `hub up` ran, or pass "
                    f"--provisioning <data-dir>/demo-provisioning.json)")
        return (f"[bold red]the MQTT broker at {broker} refused the login:[/] "
                f"{escape(str(exc))} (re-issued, revoked, its venue closed, or a device of "
                f"another venue than --venue? hub provision device-sheet writes the current "
                f"logins)")
    return f"[bold red]MQTT broker unreachable at {broker}:[/] {escape(str(exc))}"


def _unreachable(settings: Settings, exc: OSError) -> typer.Exit:
    err.print(broker_problem(settings.broker, exc))
    return typer.Exit(EXIT_UNREACHABLE)


@app.command()
def room(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(
        metavar="NUMBER", show_default=False,
        help="The room number: its devices are thermostat-NUMBER, light-NUMBER, "
             "display-NUMBER and fridge-NUMBER.")],
    duration: Annotated[float | None, typer.Option(
        min=0.1, show_default=False, help="Seconds to run; default: until Ctrl-C.")] = None,
    fridge: Annotated[bool, typer.Option(
        "--fridge/--no-fridge", help="Play the minibar fridge's display too.")] = True,
    tick: Annotated[float | None, typer.Option(
        min=0.05, show_default=False,
        help="Every this many seconds the room's temperature moves 0.5 C toward the "
             "setpoint; default: it stays.")] = None,
    connect_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds to wait for the broker.")] = 5.0,
    provisioning: ProvisioningOption = None,
) -> None:
    """Play a hotel room's thermostat, light and displays; print what the hub makes them do."""
    settings: Settings = ctx.obj
    broker, number = settings.broker, number.strip()
    if not valid_id(f"thermostat-{number}"):
        raise typer.BadParameter(f"{number!r} is not a room number (nor part of a device id)",
                                 param_hint="NUMBER")
    try:
        the_room = Room(settings.venue, number, host=broker.host, port=broker.port,
                        username=broker.username, password=broker.password,
                        credentials=_device_logins(provisioning, broker), tick_s=tick,
                        fridge=fridge, tls_ca=broker.tls_ca)
    except ValueError as exc:  # the venue is no valid id
        raise typer.BadParameter(str(exc)) from None
    notes = Notes()
    the_room.listen(notes.put)
    try:
        the_room.connect(connect_timeout)
    except OSError as exc:  # ConnectionError too: refused, or no CONNACK
        raise _unreachable(settings, exc) from None
    devices = [a.device_id for a in the_room.appliances]
    until = f"for {duration:g}s" if duration is not None else "until Ctrl-C"
    out.print(f"room {escape(the_room.number)}: {', '.join(devices)} online at {broker}, "
              f"{until}", soft_wrap=True, highlight=False)
    for appliance in the_room.appliances:
        _line(appliance.device_id, "state " + readings(appliance.state), style="dim")
    deadline = None if duration is None else time.monotonic() + duration
    try:
        with _sigterm_stops():
            notes.show_until(deadline, _show)
    except KeyboardInterrupt:
        pass
    finally:
        the_room.close()
    notes.show_pending(_show)
    out.print(f"room {escape(the_room.number)}: {_n(notes.obeyed, 'command')} obeyed, "
              f"{notes.rejected} rejected", soft_wrap=True, highlight=False)


@app.command()
def watch(
    ctx: typer.Context,
    wearer: Annotated[str, typer.Argument(
        metavar="GUEST_NUMBER_OR_DEVICE_ID", show_default=False,
        help="A demo guest's number (3: watch-guest-03) or a watch's device id.")],
    bpm: Annotated[list[str] | None, typer.Option(
        metavar="BPM,...", show_default=False,
        help=f"Heart rates to report in turn, comma-separated, each {MIN_BPM}..{MAX_BPM} "
             "(e.g. 72,130,140); repeatable.")] = None,
    every: Annotated[float, typer.Option(
        min=0.0, help="Seconds between two heart rates.")] = 1.0,
    workout: Annotated[str | None, typer.Option(
        metavar="KIND:MINUTES", show_default=False,
        help="Then report a finished workout, e.g. run:30.")] = None,
    morning: Annotated[bool, typer.Option(
        "--morning", help="Stamp the workout in the morning (now if it is morning, else "
                          "the latest 08:00), so morning rules fire at any hour.")] = False,
    tz: Annotated[str, typer.Option(
        help="The venue's time zone, for --morning (the demo's is UTC).")] = "UTC",
    wait: Annotated[float, typer.Option(
        min=0.0, help="Seconds to wait after the last report for the hub's late commands.")
    ] = 2.0,
    connect_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds to wait for the broker.")] = 5.0,
    provisioning: ProvisioningOption = None,
) -> None:
    """Play a guest's watch: report heart rates and a workout, print every vibration the hub
    sends back."""
    settings: Settings = ctx.obj
    try:
        device = watch_device_id(wearer)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="GUEST_NUMBER_OR_DEVICE_ID") from None
    try:
        bpms = parse_bpms(bpm or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--bpm") from None
    try:
        done = parse_workout(workout) if workout is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--workout") from None
    if morning and done is None:
        raise typer.BadParameter("--morning stamps the workout: give --workout too",
                                 param_hint="--morning")
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(f"unknown time zone {tz!r}", param_hint="--tz") from None
    username, password = _device_logins(provisioning, settings.broker).get(
        device, (settings.broker.username, settings.broker.password))
    wrist = Watch(settings.venue, device, tz=zone, host=settings.broker.host,
                  port=settings.broker.port, username=username, password=password)
    wrist.tls_ca = settings.broker.tls_ca
    notes = Notes()
    vibrations: list[object] = []

    def show(note: Note) -> None:
        if note.what == "changed":
            return  # what the watch itself reports is printed as it reports it
        if note.what == "obeyed" and note.command is not None and note.command.name == "vibrate":
            vibrations.append(note.command.params.get("level"))
        _show(note)

    wrist.listen(notes.put)
    try:
        wrist.connect(connect_timeout)
    except OSError as exc:
        raise _unreachable(settings, exc) from None
    out.print(f"{device} online at {settings.broker}", highlight=False)
    try:
        with _sigterm_stops():
            _play_watch(wrist, notes, show, bpms=bpms, every=every, workout=done,
                        morning=morning, wait=wait)
    except KeyboardInterrupt:
        pass
    finally:
        wrist.close()
    notes.show_pending(show)
    reported = _n(len(bpms), "heart rate") + (", 1 workout" if done else "")
    levels = ", ".join(map(str, vibrations)) or "-"
    out.print(f"{device}: reported {reported}; {_n(len(vibrations), 'vibration')} "
              f"(levels {levels}); {_n(notes.rejected, 'command')} rejected",
              soft_wrap=True, highlight=False)


def _play_watch(wrist: Watch, notes: Notes, show: Callable[[Note], None], *, bpms: list[int],
                every: float, workout: tuple[str, int] | None, morning: bool,
                wait: float) -> None:
    """Report the heart rates, then the workout, showing what the hub sends meanwhile."""
    device = wrist.device_id
    for i, value in enumerate(bpms):
        if i:
            notes.show_until(time.monotonic() + every, show)
        wrist.heart_rate(value)
        _line(device, f"reported heart rate {value} bpm")
        notes.show_pending(show)
    if workout is not None:
        if bpms:
            notes.show_until(time.monotonic() + every, show)
        kind, minutes = workout
        at = wrist.workout_ended(kind, minutes, at_morning=morning)
        stamped = (f", stamped {at.astimezone(wrist.tz):%Y-%m-%d %H:%M} {wrist.tz}"
                   if morning else "")
        _line(device, f"reported workout {kind!r} of {minutes} min ended{stamped}")
    notes.show_until(time.monotonic() + wait, show)


if __name__ == "__main__":
    app()
