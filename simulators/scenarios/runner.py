"""What every scenario shares: scripted taps, expectation checks, the result table.

A scenario is a function of a :class:`Run`. It sets up what it needs through the
REST API, then plays taps with :meth:`Run.tap`; each tap becomes a
:class:`StepResult` compared with what the script expects. Scenarios keep going
after a mismatch so one run shows every difference at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console
from rich.table import Table

from devices.client import HubError
from devices.contract import Decision, EntryReason, TapEvent, encode
from simulators.readers import Holder, ReaderPool
from simulators.rest import HubApi, HubApiError, HubUnreachable

EXIT_OK, EXIT_MISMATCH, EXIT_UNREACHABLE = 0, 1, 2


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


@dataclass(slots=True)
class StepResult:
    """One played step: what was expected, what came back, how long it took."""

    number: int
    title: str
    device: str
    expected: Expect
    got: str
    ms: float | None
    ok: bool
    decision: Decision | None = None
    event: TapEvent | None = None
    note: str = ""


@dataclass
class Run:
    """One play of a scenario: the hub's API, the readers, and the steps so far."""

    api: HubApi
    readers: ReaderPool
    venue: str
    timeout: float = 5.0
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
        expect = expect or previous.expected
        if previous.event is None:
            return self._record(title, device, expect, "nothing to re-deliver")
        client = self.readers[device]
        # expect() before publishing: the reply can beat publish_raw's return.
        future = client.expect(previous.event.event_id)
        started = time.perf_counter()
        client.publish_raw(encode(previous.event))
        result = self._await(title, device, expect, previous.event, future, started)
        first, again = previous.decision, result.decision
        if first is not None and again is not None:
            said = (first.outcome, first.reason, first.text)
            if said != (again.outcome, again.reason, again.text):
                result.ok = False
                result.note = f"first delivery got {first.outcome} {first.reason.value}"
            elif first.decided_at != again.decided_at:
                # Allowed by the contract, but worth seeing: the hub decided twice.
                result.note = "same answer, new decided_at"
        return result

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
        self, title: str, device: str, expect: Expect, got: str, *, ms: float | None = None,
        ok: bool = False, decision: Decision | None = None, event: TapEvent | None = None,
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
    refuses the scenario's setup), 2 when the hub or its broker is unreachable.
    """
    started = time.perf_counter()
    code = EXIT_OK
    try:
        run.api.health()
        scenario(run)
    except HubUnreachable as exc:
        console.print(f"[bold red]hub unreachable:[/] {exc}")
        code = EXIT_UNREACHABLE
    except HubApiError as exc:
        console.print(f"[bold red]the hub refused a REST call of the scenario:[/] {exc}")
        code = EXIT_MISMATCH
    except OSError as exc:
        # DeviceClient.connect: refused TCP connection, unknown host, or no CONNACK.
        broker = run.readers.broker
        console.print(f"[bold red]MQTT broker unreachable at {broker}:[/] {exc}")
        code = EXIT_UNREACHABLE
    if run.steps or code == EXIT_OK:
        render(name, run, time.perf_counter() - started, console)
    if code == EXIT_OK and (mismatches(run.steps) or not run.steps):
        code = EXIT_MISMATCH  # a scenario that played nothing proved nothing
    return code


# --------------------------------------------------------------------- report


def mismatches(steps: list[StepResult]) -> list[StepResult]:
    """The steps whose decision differs from the script."""
    return [s for s in steps if not s.ok]


def render(name: str, run: Run, elapsed_s: float, console: Console) -> None:
    """Print the step table and a one-line verdict."""
    table = Table(title=f"scenario {name}", title_justify="left")
    table.add_column("step", justify="right")
    table.add_column("what")
    table.add_column("device")
    table.add_column("expected")
    table.add_column("got")
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
    else:
        console.print(f"[bold green]{name}: all {total} steps as scripted[/] in {elapsed_s:.2f}s")
