"""``hub-sim``: play devices against a running hub (single taps, scenarios, load).

Exit codes: 0 as expected, 1 when the hub answered but not as expected (an
error, a timeout, a decision that differs from the script), 2 when the hub or
its broker could not be reached (or there was nothing to run against).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from devices.client import DeviceClient, HubError, NoReply, credential_from_text
from devices.contract import LineItem, PaymentRequest
from simulators.load import render_report, run_load
from simulators.readers import (
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
) -> None:
    """Simulated devices for a venue hub."""
    ctx.obj = Settings(api=api, broker=_broker(broker), venue=venue, user=user,
                       password=password, token=token)


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
        float, typer.Option(min=0.1, help="Seconds to wait for the decision.")
    ] = 5.0,
) -> None:
    """Tap one credential at one reader and print the hub's decision."""
    settings: Settings = ctx.obj
    cred = credential_from_text(credential)
    try:
        client = connect_device(settings.venue, device, settings.broker)
    except OSError as exc:
        err.print(f"[bold red]MQTT broker unreachable at {settings.broker}:[/] {exc}")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    decision, ms = _timed(lambda: client.tap(
        cred, direction=direction.value if direction else None, timeout=timeout), client)
    style = "bold green" if decision.outcome == "allow" else "bold red"
    out.print(
        f"[{style}]{decision.outcome.upper()}[/] {decision.reason.value}  "
        f'"{decision.text}"  guest: {decision.guest_name or "-"}  '
        f"zone: {decision.zone_id or '-'}  {ms:.1f} ms"
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
        err.print(f"[bold red]MQTT broker unreachable at {settings.broker}:[/] {exc}")
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
            float, typer.Option(min=0.1, help="Seconds to wait per decision.")
        ] = 5.0,
        provisioning: Annotated[Path, typer.Option(
            envvar="HUB_SIM_PROVISIONING",
            help="The provisioning sheet `hub up --demo --secure-broker` writes (device "
                 "broker logins, secure bands' keys); read by the intruder scenario.",
        )] = Path("hub-data/demo-provisioning.json"),
    ) -> None:
        settings: Settings = ctx.obj
        with settings.hub_api() as api, ReaderPool(settings.venue, settings.broker) as readers:
            run = Run(api=api, readers=readers, venue=settings.venue, timeout=timeout,
                      provisioning=provisioning)
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
        err.print(f"[bold red]MQTT broker unreachable at {settings.broker}:[/] {exc}")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    if as_json:
        print(json.dumps(asdict(report), indent=2))
    else:
        render_report(report, out)
    raise typer.Exit(1 if report.errors else 0)


if __name__ == "__main__":
    app()
