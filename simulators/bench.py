"""``hub-sim bench``: the hub against a bare MQTT echo, on the same broker, under the same load.

For each broker (the hub's embedded one, a Mosquitto of its own) it starts ``hub up
--demo`` and the echo responder (``simulators/echo.py``), sets the venue up for the
load (``bench_venue``), connects one client per device for each, and runs every phase
on the echo, then on the hub: sequential round trips; open-loop rates; a search for
the highest rate sustained (zero errors: no loss, no error reply, no ``too_late``; and
answered at the pace sent); a burst.
The echo is what the broker and the client library give; the hub's figures as
multiples of it are comparable across machines where raw milliseconds are not.
It stops everything it started, and prints a table per broker and writes all figures
as JSON.

With ``workers`` it measures a fleet as deployed instead of one ``hub up``: on Mosquitto,
a ``hub up --demo`` of its own seeds the demo venue into ``database_url`` and stops, one
``hub api`` serves the setup, and that many ``hub worker`` processes split the load
through the MQTT 5 shared subscription.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from devices.contract import utcnow
from devices.topics import Channel, device_topic
from simulators import bench_procs as procs
from simulators import echo
from simulators.bench_fleet import Fleet, burst, paced, sequential
from simulators.bench_mix import Mix, MixName, Traffic
from simulators.bench_stats import (
    Figures,
    PhaseRecord,
    PhaseResult,
    bisect_rate,
    ratios,
    search_bounds,
    summarize,
)
from simulators.bench_venue import Plan, prepare
from simulators.rest import HubApi, HubApiError, HubUnreachable

BrokerKind = Literal["embedded", "mosquitto"]
TARGETS = ("echo", "hub")
DRAIN_S = 60.0  # after a phase's timeout, how long late replies may still come in


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to run (the command line's options)."""

    brokers: tuple[BrokerKind, ...] = ("embedded", "mosquitto")
    devices: int = 50
    mix: MixName = "realistic"
    rates: tuple[float, ...] = (200, 500, 1000, 2000)
    seconds: float = 5.0
    sequential: int = 200
    burst: int = 5000
    timeout: float = 10.0
    burst_timeout: float = 120.0
    search_steps: int = 3
    seed: int = 1
    venue: str = "demo-resort"
    user: str = "admin"
    password: str = "demo-admin"
    mosquitto: str | None = None  # the binary; default found on PATH or in /usr/sbin
    # A fleet as deployed: this many `hub worker` processes and one `hub api` on Mosquitto
    # and ``database_url``; None: one `hub up --demo` process on SQLite, as before.
    workers: int | None = None
    database_url: str | None = None

    def public(self) -> dict[str, Any]:
        shown = {k: v for k, v in asdict(self).items() if k != "password"}
        if self.database_url is not None:
            shown["database_url"] = procs.redact_url(self.database_url)
        return shown


class Crashed(RuntimeError):
    """A process the bench started ended while it was being measured."""


def parse_rates(text: str) -> tuple[float, ...]:
    """``"200,500,1000"`` -> (200.0, 500.0, 1000.0), ascending, each > 0; else ValueError."""
    try:
        rates = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"rates must be numbers separated by commas, not {text!r}") from None
    if not rates or rates[0] <= 0:
        raise ValueError(f"rates must be positive, at least one: {text!r}")
    return tuple(rates)


def brokers_for(choice: str) -> tuple[BrokerKind, ...]:
    """``both`` -> the embedded broker, then Mosquitto; one broker's name -> that one."""
    if choice == "both":
        return get_args(BrokerKind)
    if choice not in get_args(BrokerKind):
        raise ValueError(f"no broker kind {choice!r}")
    return (cast(BrokerKind, choice),)


def fleet_options(brokers: tuple[BrokerKind, ...], workers: int | None,
                  database_url: str | None) -> tuple[BrokerKind, ...]:
    """The brokers to run a fleet of ``workers`` on: Mosquitto alone (the embedded broker has
    no shared subscriptions), and a database is needed; ValueError when that cannot be."""
    if workers is None:
        if database_url is not None:
            raise ValueError("--database-url is the fleet's database: give --workers too")
        return brokers
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    if database_url is None:
        raise ValueError("a fleet needs --database-url (the PostgreSQL its workers share)")
    if "mosquitto" not in brokers:
        raise ValueError("a fleet runs on Mosquitto (MQTT 5 shared subscriptions), not the "
                         "embedded broker")
    return ("mosquitto",)


def mix_named(name: str) -> MixName:
    if name not in get_args(MixName):
        raise ValueError(f"no traffic mix {name!r}")
    return cast(MixName, name)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "loadavg_start": _loadavg()}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_bench(options: BenchOptions, log: Console) -> tuple[dict[str, Any], int]:
    """Run every broker's bench; the JSON report and the exit code (0 ran, 1 a measured
    process died under the load, 2 something could not be started)."""
    report: dict[str, Any] = {
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started_at": utcnow().isoformat(), "machine": machine(), "options": options.public(),
        "hub_env": {k: v for k, v in procs.hub_env(False).items() if k.startswith("HUB_")},
        "brokers": {},
    }
    for kind in options.brokers:
        report["brokers"][kind] = run_broker(kind, options, log)
    report["machine"]["loadavg_end"] = _loadavg()
    report["finished_at"] = utcnow().isoformat()
    statuses = {b["status"] for b in report["brokers"].values()}
    code = 2 if "not_started" in statuses else 1 if "crashed" in statuses else 0
    return report, code


def run_broker(kind: BrokerKind, options: BenchOptions, log: Console) -> dict[str, Any]:
    """Start the broker's processes, measure, stop them; the broker's part of the report."""
    section: dict[str, Any] = {"status": "ran", "note": None}
    say = _sayer(log, kind)
    binary = procs.find_mosquitto(options.mosquitto) if kind == "mosquitto" else None
    if kind == "mosquitto" and binary is None:
        alone = options.brokers == ("mosquitto",)
        section.update(status="not_started" if alone else "skipped",
                       note="mosquitto not found (apt-get install mosquitto, or --mosquitto PATH)")
        say(f"[yellow]skipped:[/] {section['note']}")
        return section
    root = Path(tempfile.mkdtemp(prefix=f"hub-bench-{kind}-"))
    began = os.times()  # the bench's own CPU: its device clients share the machine too
    spawned: list[procs.Spawned] = []
    figures = {target: Figures() for target in TARGETS}
    if options.workers is not None:
        section["fleet"] = {"workers": options.workers, "api": 1,
                            "database": _database_name(options.database_url)}
    try:
        with ExitStack() as stack:
            http_port, port = procs.free_port(), procs.free_port()
            mqtt5 = kind == "mosquitto"
            if binary is not None:
                spawned.append(stack.enter_context(procs.mosquitto(binary, root, port)))
                say(f"mosquitto on 127.0.0.1:{port}")
            if options.workers is not None:
                assert options.database_url is not None
                _start_fleet(stack, spawned, root, http_port, f"mqtt://127.0.0.1:{port}",
                             options, say)
            else:
                if binary is not None:
                    the_hub = procs.hub(root, http_port=http_port,
                                        broker_url=f"mqtt://127.0.0.1:{port}")
                else:
                    the_hub = procs.hub(root, http_port=http_port, mqtt_port=port)
                spawned.append(stack.enter_context(the_hub))
                say(f"hub up --demo: API http://127.0.0.1:{http_port}, MQTT 127.0.0.1:{port}"
                    f" ({'5' if mqtt5 else '3.1.1'})")
            with HubApi(f"http://127.0.0.1:{http_port}", username=options.user,
                        password=options.password) as api:
                plan = prepare(api, options.venue, devices=options.devices, mix=options.mix,
                               run_tag=kind, log=say)
            section["plan"] = _plan_json(plan)
            if options.workers is not None:  # after the venue is set up: they read it fresh
                assert options.database_url is not None
                for n in range(1, options.workers + 1):
                    spawned.append(stack.enter_context(procs.hub_worker(
                        root, name=f"w{n}", broker_url=f"mqtt://127.0.0.1:{port}",
                        database_url=options.database_url)))
                say(f"{options.workers} hub worker(s) in the shared-subscription group 'hubs'")
            spawned.append(stack.enter_context(procs.echo(root, "127.0.0.1", port, mqtt5=mqtt5)))
            fleets = {"echo": stack.enter_context(_echo_fleet(port, plan, mqtt5)),
                      "hub": stack.enter_context(_hub_fleet(port, plan, mqtt5, options.venue))}
            say(f"{len(plan.devices)} connections each for the echo and the hub")

            def check(phase: str) -> None:
                for s in spawned:  # a returncode already noted: stopped by the bench
                    if s.returncode is None and (code := s.exited()) is not None:
                        raise Crashed(f"{s.what} exited ({code}) during {phase}:\n{s.tail()}")

            measure(options, plan, fleets, figures, say, check)
    except procs.StartError as exc:
        section.update(status="not_started", note=str(exc))
        say(f"[bold red]could not start:[/] {escape(str(exc))}")
    except (HubUnreachable, HubApiError, LookupError, ConnectionError) as exc:
        section.update(status="not_started", note=f"setting the bench up failed: {exc}")
        say(f"[bold red]setting the bench up failed:[/] {escape(str(exc))}")
    except Crashed as exc:
        section.update(status="crashed", note=str(exc))
        say(f"[bold red]{escape(str(exc))}[/]")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    section["processes"] = [s.report() for s in spawned]
    ended = os.times()
    section["bench_cpu_s"] = round(ended.user + ended.system - began.user - began.system, 2)
    section["echo"] = figures_json(figures["echo"])
    section["hub"] = figures_json(figures["hub"])
    section["ratios"] = ratios(figures["echo"], figures["hub"])
    return section


def _start_fleet(stack: ExitStack, spawned: list[procs.Spawned], root: Path, http_port: int,
                 broker_url: str, options: BenchOptions, say: Callable[[str], None]) -> None:
    """The demo venue seeded into the fleet's database by a `hub up --demo` of its own (on
    an embedded broker of its own, so no session of it stays on Mosquitto), stopped; then
    `hub api` on that database and data dir. The workers start once the venue is set up."""
    assert options.database_url is not None
    with procs.hub(root, http_port=procs.free_port(), mqtt_port=procs.free_port(),
                   database_url=options.database_url) as seeding:
        spawned.append(seeding)
        seeding.extra["job"] = "seeds the demo venue; stopped before the load"
    if seeding.returncode != 0:
        raise procs.StartError(f"seeding the demo venue exited ({seeding.returncode}):\n"
                               f"{seeding.tail()}")
    say(f"demo venue seeded into {_database_name(options.database_url)}")
    spawned.append(stack.enter_context(procs.hub_api(root, http_port=http_port,
                                                     database_url=options.database_url,
                                                     broker_url=broker_url)))
    say(f"hub api on http://127.0.0.1:{http_port}; the workers will use {broker_url} (MQTT 5)")


def _database_name(url: str | None) -> str | None:
    """``postgresql+psycopg://hub:pw@host:5432/db`` -> ``postgresql host:5432/db``: which
    database, without credentials."""
    if url is None:
        return None
    parts = urlsplit(url)
    where = parts.netloc.rsplit("@", 1)[-1] + parts.path
    return f"{parts.scheme.split('+')[0]} {where}".strip()


def _sayer(log: Console, kind: str) -> Callable[[str], None]:
    def say(text: str) -> None:
        log.print(f"[dim]{utcnow():%H:%M:%S}[/] [cyan]{kind:<9}[/] {text}", highlight=False,
                  soft_wrap=True)
    return say


def _echo_fleet(port: int, plan: Plan, mqtt5: bool) -> Fleet:
    return Fleet("127.0.0.1", port, [d.device_id for d in plan.devices], mqtt5=mqtt5, tag="echo",
                 events=echo.events_topic, replies=lambda d: [echo.replies_topic(d)])


def _hub_fleet(port: int, plan: Plan, mqtt5: bool, venue: str) -> Fleet:
    return Fleet("127.0.0.1", port, [d.device_id for d in plan.devices], mqtt5=mqtt5, tag="hub",
                 events=lambda d: device_topic(venue, d, Channel.EVENTS),
                 replies=lambda d: [device_topic(venue, d, Channel.DECISIONS),
                                    device_topic(venue, d, Channel.ERRORS)])


# ------------------------------------------------------------------ the phases


def measure(options: BenchOptions, plan: Plan, fleets: dict[str, Fleet],
            figures: dict[str, Figures], say: Callable[[str], None],
            check: Callable[[str], None]) -> None:
    """Every phase, the echo first, then the hub, into ``figures`` as they complete."""
    run = uuid.uuid4().hex[:6]
    traffic = {t: Traffic(Mix(plan.devices, plan.pools, mix=options.mix, seed=options.seed),
                          tag=f"{t[0]}{run}") for t in TARGETS}
    timeout = options.timeout

    def both(phase: str, run_on: Callable[[str], PhaseRecord]) -> dict[str, PhaseResult]:
        results = {}
        for target in TARGETS:
            results[target] = result = summarize(run_on(target))
            say(f"{target:<4} {phase}: {describe(result)}")
            check(phase)
        return results

    if options.sequential:
        for target, result in both("sequential", lambda t: sequential(
                fleets[t], traffic[t], options.sequential, timeout=timeout)).items():
            figures[target].sequential = result
    for rate in options.rates:
        at_rate = partial(_paced_on, fleets, traffic, rate, options.seconds, timeout)
        for target, result in both(f"{rate:g}/s", at_rate).items():
            figures[target].paced.append(result)
    for target in TARGETS:
        fig = figures[target]

        def probe(rate: float, target: str = target, fig: Figures = fig) -> bool:
            result = summarize(paced(fleets[target], traffic[target], rate, options.seconds,
                                     timeout=timeout, drain=DRAIN_S, phase="search"))
            fig.search.append(result)
            say(f"{target:<4} search {rate:g}/s: {describe(result)}")
            check("the search")
            return result.sustained

        good, bad = search_bounds(fig.paced)
        fig.max_rate, fig.first_bad_rate = bisect_rate(good, bad, options.search_steps, probe)
        bound = "at least " if fig.first_bad_rate is None else ""
        say(f"{target:<4} highest rate sustained with zero errors: {bound}{fig.max_rate:g}/s")
    if options.burst:
        for target, result in both(f"burst of {options.burst}", lambda t: burst(
                fleets[t], traffic[t], options.burst, timeout=options.burst_timeout,
                drain=DRAIN_S)).items():
            figures[target].burst = result
    for target in TARGETS:
        say(f"{target:<4} sent by kind: " + ", ".join(
            f"{n} {what}" for what, n in sorted(traffic[target].mix.sent.items())))


def _paced_on(fleets: dict[str, Fleet], traffic: dict[str, Traffic], rate: float,
              seconds: float, timeout: float, target: str) -> PhaseRecord:
    return paced(fleets[target], traffic[target], rate, seconds, timeout=timeout, drain=DRAIN_S)


def describe(r: PhaseResult) -> str:
    """One progress line for a phase."""
    lat = r.latency_ms
    text = (f"{r.sent} sent, {r.answered} answered ({r.answered_per_s:g}/s), {r.lost} lost, "
            f"p50 {_ms(lat['p50'])} p95 {_ms(lat['p95'])} p99 {_ms(lat['p99'])} ms")
    if r.too_late or r.error_replies:
        text += f", {r.too_late} too_late, {r.error_replies} error replies"
    if not r.kept_pace:
        text += ", fell behind"
    if r.all_answered_s is not None and r.phase == "burst":
        text += f", all answered in {r.all_answered_s:.2f} s"
    return text


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


# ------------------------------------------------------------------ the report


def phase_json(result: PhaseResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {**asdict(result), "errors": result.errors, "zero_errors": result.zero_errors,
            "kept_pace": result.kept_pace, "sustained": result.sustained}


def figures_json(fig: Figures) -> dict[str, Any]:
    return {
        "sequential": phase_json(fig.sequential),
        "paced": [phase_json(r) for r in fig.paced],
        "search": [phase_json(r) for r in fig.search],
        # Zero errors (no loss, no error reply, no too_late) and answered at the pace sent.
        "max_sustained_rate": fig.max_rate,
        # None: every rate tried was sustained, so max_sustained_rate is a lower bound.
        "first_rate_not_sustained": fig.first_bad_rate,
        "burst": phase_json(fig.burst),
    }


def _plan_json(plan: Plan) -> dict[str, Any]:
    roles: dict[str, int] = {}
    for d in plan.devices:
        roles[d.role] = roles.get(d.role, 0) + 1
    return {"devices": [d.device_id for d in plan.devices], "roles": roles,
            "registered": list(plan.registered), "reported_lost": list(plan.lost),
            "consenting": list(plan.consenting)}


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")


def render(report: dict[str, Any], console: Console) -> None:
    """A table per broker: each phase's figures for the echo and the hub, and their ratio."""
    if not console.is_terminal:  # a file or a pipe has no width: don't wrap at rich's 80
        console.width = max(console.width, 120)
    for kind, section in report["brokers"].items():
        if section["status"] in ("skipped", "not_started"):
            console.print(f"[bold]{kind}[/]: {section['status']}: {escape(section['note'] or '')}")
            continue
        fleet = section.get("fleet")
        title = f"{kind} broker: echo vs hub"
        if fleet:
            title += (f" ({fleet['workers']} hub worker{'s' if fleet['workers'] > 1 else ''}"
                      f" + hub api, {fleet['database']})")
        table = Table(title=escape(title), title_justify="left",
                      caption="latency: p50 / p95 / p99 ms (burst: p50 / p99 / max); ratio: "
                              "hub / echo (of p50 for latency, of the time for the burst); ✗ "
                              "not sustained: lost, too_late or error replies, or answered "
                              "below 95% of the rate",
                      caption_justify="left")
        table.add_column("phase", style="bold", no_wrap=True)
        for column in ("echo", "hub", "ratio"):
            table.add_column(column, justify="right", no_wrap=True)
        for row in _rows(section):
            table.add_row(*row)
        console.print(table)
        if section["status"] == "crashed":
            console.print(f"[bold red]{escape(section['note'])}[/]")
        if fleet:  # where the run's CPU went, to tell which process is the limit
            console.print("CPU seconds over the run: " + ", ".join(
                f"{p['what']} {p['cpu_s']}" for p in section["processes"]
                if p.get("cpu_s") is not None) + f", the bench {section['bench_cpu_s']}",
                highlight=False)
    m = report["machine"]
    console.print(f"{m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}; load "
                  f"{m['loadavg_start']} at start, {m['loadavg_end']} at end", highlight=False)


def _rows(section: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    echo_f, hub_f, ratio = section["echo"], section["hub"], section["ratios"]

    def lat(r: dict[str, Any] | None, keys: Sequence[str] = ("p50", "p95", "p99")) -> str:
        return "-" if r is None else " / ".join(_ms(r["latency_ms"][k]) for k in keys)

    def got(r: dict[str, Any] | None) -> str:
        if r is None:
            return "-"
        text = f"{r['answered_per_s']:g}/s, {r['lost']} lost"
        if r["too_late"] or r["error_replies"]:
            text += f", {r['too_late']} too_late, {r['error_replies']} err"
        return text if r["sustained"] else f"{text} ✗"

    def x(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.0f}x" if value >= 100 else f"{value:.3g}x"

    seq_e, seq_h = echo_f["sequential"], hub_f["sequential"]
    if seq_e or seq_h:
        n = (seq_e or seq_h)["sent"]
        yield (f"sequential x{n}", lat(seq_e), lat(seq_h),
               x(ratio["sequential_p50"]))
    echo_by_rate = {r["rate"]: r for r in echo_f["paced"]}
    for h in hub_f["paced"]:
        e = echo_by_rate.get(h["rate"])
        yield f"{h['rate']:g}/s answered", got(e), got(h), ""
        yield (f"{h['rate']:g}/s latency", lat(e), lat(h),
               x(ratio["p50_by_rate"].get(f"{h['rate']:g}")))

    def probes(fig: dict[str, Any]) -> str:
        return ", ".join(f"{r['rate']:g} {'ok' if r['sustained'] else 'no'}"
                         for r in fig["search"]) or "-"

    if echo_f["search"] or hub_f["search"]:
        yield "search probes (/s)", probes(echo_f), probes(hub_f), ""

    def best(fig: dict[str, Any]) -> str:
        if fig["max_sustained_rate"] is None:
            return "-"
        bound = "≥ " if fig["first_rate_not_sustained"] is None else ""
        return f"{bound}{fig['max_sustained_rate']:g}/s"

    throughput = x(ratio["throughput"])
    if ratio["throughput"] is not None and ratio["throughput_bounded_by_echo"]:
        throughput = "≤ " + throughput
    yield "highest rate sustained", best(echo_f), best(hub_f), throughput
    b_e, b_h = echo_f["burst"], hub_f["burst"]
    if b_e or b_h:
        n = (b_e or b_h)["sent"]

        def all_in(r: dict[str, Any] | None) -> str:
            if r is None:
                return "-"
            took = "-" if r["all_answered_s"] is None else f"{r['all_answered_s']:.2f} s"
            return f"{r['answered']} ok, {r['lost']} lost, {took}"

        yield (f"burst {n}: answered, time", all_in(b_e), all_in(b_h),
               x(ratio["burst_all_answered"]))
        yield (f"burst {n} latency", lat(b_e, ("p50", "p99", "max")),
               lat(b_h, ("p50", "p99", "max")), "")
        if b_h and (b_h["too_late"] or b_h["error_replies"]):
            yield (f"burst {n} too_late / err", "-",
                   f"{b_h['too_late']} / {b_h['error_replies']}", "")
