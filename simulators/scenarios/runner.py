"""What every scenario shares: scripted taps and payments, checks, the result table.

A scenario is a function of a :class:`Run`. It sets up what it needs through the
REST API, then plays taps with :meth:`Run.tap`, payments with :meth:`Run.pay`,
REST checks with :meth:`Run.check` and awaited receipts with :meth:`Run.receipt`;
each becomes a :class:`StepResult` compared with what the script expects.
Scenarios keep going after a mismatch so one run shows every difference at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.table import Table

from devices.client import HubError, LoginRefused
from devices.contract import (
    Decision,
    EntryReason,
    LineItem,
    PaymentDecision,
    PaymentReason,
    PaymentRequest,
    TapEvent,
    encode,
)
from simulators.readers import AccountChoice, ExpectedReceipt, Holder, ReaderPool, payment_request
from simulators.rest import HubApi, HubApiError, HubUnreachable

EXIT_OK, EXIT_MISMATCH, EXIT_UNREACHABLE = 0, 1, 2


class NotPlayable(Exception):
    """The hub answers but cannot host this scenario (e.g. the intruder needs a hub started
    without ``--open-broker``); the message says why. Exit 2, like an unreachable hub."""


@dataclass(frozen=True, slots=True)
class Expect:
    """The decision the script expects for a step."""

    outcome: Literal["allow", "deny"]
    reason: EntryReason

    def __str__(self) -> str:
        return f"{self.outcome} {self.reason.value}"

    def matches(self, decision: Decision) -> bool:
        return decision.outcome == self.outcome and decision.reason == self.reason


def allow() -> Expect:
    return Expect("allow", EntryReason.OK)


def deny(reason: EntryReason) -> Expect:
    return Expect("deny", reason)


@dataclass(frozen=True, slots=True)
class PayExpect:
    """The payment decision the script expects; ``account``/``balance_after`` if given."""

    outcome: Literal["approve", "decline"]
    reason: PaymentReason
    account: Literal["wallet", "folio"] | None = None
    balance_after: int | None = None

    def __str__(self) -> str:
        text = f"{self.outcome} {self.reason.value}"
        if self.account is not None:
            text += f", {self.account}"
        if self.balance_after is not None:
            text += f", balance {self.balance_after}"
        return text

    def matches(self, decision: PaymentDecision) -> bool:
        return (
            decision.outcome == self.outcome and decision.reason == self.reason
            and (self.account is None or decision.account == self.account)
            and (self.balance_after is None or decision.balance_after == self.balance_after)
        )


def approve(*, account: Literal["wallet", "folio"] | None = None,
            balance_after: int | None = None) -> PayExpect:
    return PayExpect("approve", PaymentReason.OK, account, balance_after)


def decline(reason: PaymentReason) -> PayExpect:
    return PayExpect("decline", reason)


def describe_payment(decision: PaymentDecision) -> str:
    """A payment decision in the words of :class:`PayExpect`, for the table."""
    text = f"{decision.outcome} {decision.reason.value}"
    if decision.account is not None:
        text += f", {decision.account}"
    if decision.balance_after is not None:
        text += f", balance {decision.balance_after}"
    return text


def same_answer(first: PaymentDecision, again: PaymentDecision) -> list[str]:
    """How a repeated payment's decision differs from the first one (empty: the same)."""
    fields = ("outcome", "reason", "transaction_id", "amount", "currency", "account",
              "balance_after")
    return [f"{name} {getattr(again, name)!r} was {getattr(first, name)!r}"
            for name in fields if getattr(first, name) != getattr(again, name)]


Expected = Expect | PayExpect | str


@dataclass(slots=True)
class StepResult:
    """One played step: what was expected, what came back, how long it took."""

    number: int
    title: str
    device: str
    expected: Expected
    got: str
    ms: float | None
    ok: bool
    decision: Decision | PaymentDecision | None = None
    event: TapEvent | PaymentRequest | None = None
    note: str = ""
    sent: bytes | None = None  # a payment request's bytes as published
    started: float | None = None  # time.perf_counter() when it was published

    @property
    def payment(self) -> PaymentDecision | None:
        """The payment decision of a payment step, if one came back."""
        return self.decision if isinstance(self.decision, PaymentDecision) else None


@dataclass
class Run:
    """One play of a scenario: the hub's API, the readers, and the steps so far."""

    api: HubApi
    readers: ReaderPool
    venue: str
    timeout: float = 5.0
    # How soon a reaction (the room's welcome) must follow the decision that caused it: the
    # product's promise by default; a test on a loaded machine checks the reaction, not
    # its latency (the benchmarks measure that), and gives it longer.
    within: float = 1.0
    provisioning: Path | None = None  # the demo's provisioning sheet (hub-sim --provisioning)
    steps: list[StepResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Something worth printing under the table (e.g. the ids a run created)."""
        self.notes.append(text)

    def tap(
        self, title: str, device: str, holder: Holder, expect: Expect, *,
        direction: Literal["in", "out"] | None = None,
        before: Callable[[], object] | None = None,
    ) -> StepResult:
        """Present ``holder`` at ``device`` and check the decision (``before`` runs first)."""
        if before is not None:
            try:
                before()
            except HubApiError as exc:
                return self._record(title, device, expect, f"setup failed: {exc}")
        client = self.readers[device]
        started = time.perf_counter()
        event, future = client.send_tap(holder.credential, direction=direction)
        return self._await(title, device, expect, event, future, started)

    def redeliver(
        self, title: str, device: str, previous: StepResult, expect: Expect | None = None
    ) -> StepResult:
        """Publish ``previous``'s event again, byte for byte, as a retrying reader would.

        The step passes only when the hub answers exactly as it did the first time.
        """
        if expect is None and isinstance(previous.expected, Expect):
            expect = previous.expected
        if not isinstance(previous.event, TapEvent) or expect is None:
            return self._record(title, device, expect or "-", "nothing to re-deliver")
        client = self.readers[device]
        # expect() before publishing: the reply can beat publish_raw's return.
        future = client.expect(previous.event.event_id)
        started = time.perf_counter()
        client.publish_raw(encode(previous.event))
        result = self._await(title, device, expect, previous.event, future, started)
        first, again = previous.decision, result.decision
        if isinstance(first, Decision) and isinstance(again, Decision):
            said = (first.outcome, first.reason, first.text)
            if said != (again.outcome, again.reason, again.text):
                result.ok = False
                result.note = f"first delivery got {first.outcome} {first.reason.value}"
            elif first.decided_at != again.decided_at:
                # Allowed by the contract, but worth seeing: the hub decided twice.
                result.note = "same answer, new decided_at"
        return result

    # ------------------------------------------------------------ payments

    def pay(
        self, title: str, device: str, holder: Holder, amount: int, expect: PayExpect, *,
        merchant: str, currency: str, account: AccountChoice = "auto", pin: str | None = None,
        key: str | None = None, items: Sequence[LineItem] = (),
        same_as: StepResult | None = None,
    ) -> StepResult:
        """Charge ``holder`` ``amount`` at terminal ``device`` and check the decision.

        ``key``: an idempotency key (default: a fresh one, i.e. a new attempt).
        ``same_as``: an earlier payment step whose decision this one must repeat
        (same transaction, same balance), as a retry with the same key must.
        """
        request = payment_request(
            holder.credential, amount=amount, currency=currency, merchant_id=merchant,
            idempotency_key=key, items=items, pin=pin, account=account,
        )
        return self._send_payment(title, device, expect, request, encode(request), same_as)

    def republish(
        self, title: str, device: str, previous: StepResult, expect: PayExpect | None = None
    ) -> StepResult:
        """Publish ``previous``'s payment request again, byte for byte (same event id).

        The step passes only when the hub repeats its first decision exactly.
        """
        if expect is None and isinstance(previous.expected, PayExpect):
            expect = previous.expected
        request = previous.event
        if expect is None or previous.sent is None or not isinstance(request, PaymentRequest):
            return self._record(title, device, expect or "-", "nothing to re-publish")
        return self._send_payment(title, device, expect, request, previous.sent, previous)

    def _send_payment(
        self, title: str, device: str, expect: PayExpect, request: PaymentRequest,
        payload: bytes, same_as: StepResult | None,
    ) -> StepResult:
        client = self.readers[device]
        # expect() before publishing: the reply can beat publish_raw's return.
        future = client.expect(request.event_id)
        started = time.perf_counter()
        client.publish_raw(payload)
        return self._await_payment(title, device, expect, request, payload, future, started,
                                   same_as)

    def _await_payment(
        self, title: str, device: str, expect: PayExpect, request: PaymentRequest,
        payload: bytes, future: Future[PaymentDecision], started: float,
        same_as: StepResult | None,
    ) -> StepResult:
        try:
            decision = future.result(self.timeout)
        except TimeoutError:
            step = self._record(title, device, expect, f"no reply in {self.timeout:g}s",
                                event=request)
        except HubError as exc:
            step = self._record(title, device, expect, f"hub error {exc}", event=request)
        else:
            ms = (time.perf_counter() - started) * 1000
            if not isinstance(decision, PaymentDecision):  # e.g. an entry decision
                got = f"a {getattr(decision, 'kind', type(decision).__name__)} reply"
                step = self._record(title, device, expect, got, ms=ms, event=request)
            else:
                step = self._record(title, device, expect, describe_payment(decision), ms=ms,
                                    ok=expect.matches(decision), decision=decision,
                                    event=request)
                self._compare(step, decision, same_as)
        step.sent, step.started = payload, started
        return step

    @staticmethod
    def _compare(step: StepResult, decision: PaymentDecision, same_as: StepResult | None) -> None:
        if same_as is None:
            return
        first = same_as.payment
        if first is None:
            step.ok, step.note = False, "nothing to compare with"
        elif differences := same_answer(first, decision):
            step.ok, step.note = False, "; ".join(differences)
        else:
            step.note = f"same transaction {(decision.transaction_id or '-')[:8]}"

    # --------------------------------------------------------- other checks

    def check(
        self, title: str, where: str, expected: str, probe: Callable[[], tuple[bool, str]]
    ) -> StepResult:
        """A step that is not a tap: ``probe`` returns (as expected?, what it saw).

        A REST call the hub refuses fails the step (``HTTP 409: ...``); an
        unreachable hub ends the scenario as usual.
        """
        started = time.perf_counter()
        try:
            ok, got = probe()
        except HubApiError as exc:
            ok, got = False, f"HTTP {exc.status}: {exc.detail}"
        ms = (time.perf_counter() - started) * 1000
        return self._record(title, where, expected, got, ms=ms, ok=ok)

    def fail(self, title: str, where: str, expected: Expected, why: str) -> StepResult:
        """A step that could not be played (what it depends on failed earlier)."""
        return self._record(title, where, expected, why)

    def receipt(
        self, title: str, expected: ExpectedReceipt, *, within: float,
        since: float | None = None, where: str | None = None,
    ) -> StepResult:
        """Wait for a receipt on a guest's notifications topic and check it.

        ``within`` seconds of ``since`` (a ``time.perf_counter()``, e.g. when the
        payment was published; default now). ``ms`` is the time from ``since``.
        """
        where = where or f"app {expected.guest_id}"
        app = self.readers.guest_app()
        since = time.perf_counter() if since is None else since
        left = max(0.0, since + within - time.perf_counter())
        arrived = app.wait_for(expected, left)
        if arrived is None:
            return self._record(title, where, str(expected), f"no receipt in {within:g}s")
        ms = (arrived.at - since) * 1000
        problems = expected.differences(arrived)
        if arrived.at > since + within:  # it was there, but late
            problems.append(f"arrived after {within:g}s")
        got = str(expected) if not problems else "; ".join(problems)
        return self._record(title, where, str(expected), got, ms=ms, ok=not problems)

    def _await(
        self, title: str, device: str, expect: Expect, event: TapEvent,
        future: Future[Decision], started: float,
    ) -> StepResult:
        try:
            decision = future.result(self.timeout)
        except TimeoutError:
            got = f"no reply in {self.timeout:g}s"
            return self._record(title, device, expect, got, event=event)
        except HubError as exc:
            return self._record(title, device, expect, f"hub error {exc}", event=event)
        ms = (time.perf_counter() - started) * 1000
        got = f"{decision.outcome} {decision.reason.value}"
        return self._record(
            title, device, expect, got, ms=ms, ok=expect.matches(decision),
            decision=decision, event=event,
        )

    def _record(
        self, title: str, device: str, expect: Expected, got: str, *, ms: float | None = None,
        ok: bool = False, decision: Decision | PaymentDecision | None = None,
        event: TapEvent | PaymentRequest | None = None,
    ) -> StepResult:
        step = StepResult(
            len(self.steps) + 1, title, device, expect, got, ms, ok, decision=decision, event=event
        )
        self.steps.append(step)
        return step


# ----------------------------------------------------------------------- play


def play(name: str, scenario: Callable[[Run], None], run: Run, console: Console) -> int:
    """Play ``scenario`` and print its table; the process exit code.

    0 when every step went as scripted, 1 on any difference (or when the hub
    refuses the scenario's setup), 2 when the hub or its broker is unreachable
    (or the hub cannot host the scenario: :class:`NotPlayable`).
    """
    started = time.perf_counter()
    code = EXIT_OK
    try:
        run.api.health()
        scenario(run)
    except HubUnreachable as exc:
        console.print(f"[bold red]hub unreachable:[/] {exc}")
        code = EXIT_UNREACHABLE
    except NotPlayable as exc:
        console.print(f"[bold red]cannot play {name}:[/] {exc}")
        code = EXIT_UNREACHABLE
    except HubApiError as exc:
        console.print(f"[bold red]the hub refused a REST call of the scenario:[/] {exc}")
        code = EXIT_MISMATCH
    except OSError as exc:
        # DeviceClient.connect: refused TCP connection, unknown host, or no CONNACK.
        broker = run.readers.broker
        what = "refused the login" if isinstance(exc, LoginRefused) else "unreachable"
        console.print(f"[bold red]MQTT broker at {broker} {what}:[/] {exc}")
        code = EXIT_UNREACHABLE
    if run.steps or code == EXIT_OK:
        render(name, run, time.perf_counter() - started, console, stopped=code != EXIT_OK)
    if code == EXIT_OK and (mismatches(run.steps) or not run.steps):
        code = EXIT_MISMATCH  # a scenario that played nothing proved nothing
    return code


# --------------------------------------------------------------------- report


def mismatches(steps: list[StepResult]) -> list[StepResult]:
    """The steps whose decision differs from the script."""
    return [s for s in steps if not s.ok]


def render(name: str, run: Run, elapsed_s: float, console: Console, *,
           stopped: bool = False) -> None:
    """Print the step table and a one-line verdict (``stopped``: the scenario ended early,
    so the steps shown are not all it has)."""
    table = Table(title=f"scenario {name}", title_justify="left")
    table.add_column("step", justify="right")
    table.add_column("what")
    table.add_column("device")
    # Folded, not cut: a reason code shortened to "credential_f…" says nothing.
    table.add_column("expected", overflow="fold")
    table.add_column("got", overflow="fold")
    table.add_column("ms", justify="right")
    table.add_column("")
    for s in run.steps:
        mark = "[green]✓[/]" if s.ok else "[red]✗[/]"
        got = s.got if s.ok else f"[red]{s.got}[/]"
        if s.note:
            got += f" [dim]({s.note})[/]"
        ms = f"{s.ms:.1f}" if s.ms is not None else "-"
        table.add_row(str(s.number), s.title, s.device, str(s.expected), got, ms, mark)
    console.print(table)
    for text in run.notes:
        console.print(f"[dim]{text}[/]")
    bad = mismatches(run.steps)
    total = len(run.steps)
    if bad:
        numbers = ", ".join(str(s.number) for s in bad)
        console.print(
            f"[bold red]{name}: {len(bad)} of {total} steps differ from the script "
            f"(steps {numbers})[/] in {elapsed_s:.2f}s"
        )
    elif stopped:
        console.print(f"[bold red]{name}: stopped after {total} steps (see above)[/] "
                      f"in {elapsed_s:.2f}s")
    else:
        console.print(f"[bold green]{name}: all {total} steps as scripted[/] in {elapsed_s:.2f}s")
