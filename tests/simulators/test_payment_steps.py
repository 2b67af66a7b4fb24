"""Payment steps of the scenario runner with a fake terminal and a fake phone app; the
``pay`` command's option handling; the REST client's payment calls."""

from __future__ import annotations

import json
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from devices.client import HubError
from devices.contract import (
    Decision,
    EntryReason,
    ErrorCode,
    ErrorMessage,
    LineItem,
    PaymentDecision,
    PaymentReason,
    PaymentRequest,
    Receipt,
    parse_event,
)
from simulators.cli import app
from simulators.readers import ArrivedReceipt, Broker, ExpectedReceipt, Wristband, take_receipt
from simulators.rest import HubApi, HubApiError
from simulators.scenarios import SCENARIOS
from simulators.scenarios.runner import (
    PayExpect,
    Run,
    approve,
    decline,
    describe_payment,
    play,
    same_answer,
)

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BAND = Wristband("04A10000000001")
CAFE: dict[str, Any] = {"merchant": "cafe", "currency": "USD"}


def answer(request: PaymentRequest, outcome: str = "approve", reason: str = "ok",
           **kw: Any) -> PaymentDecision:
    fields: dict[str, Any] = {
        "event_id": request.event_id, "idempotency_key": request.idempotency_key,
        "outcome": outcome, "reason": PaymentReason(reason), "text": reason,
        "amount": request.amount, "currency": request.currency, "decided_at": AT,
    }
    if outcome == "approve":
        fields.update(transaction_id="t1", account="wallet", balance_after=8800)
    fields.update(kw)
    return PaymentDecision(**fields)


class FakeTerminal:
    """A DeviceClient stand-in: answers each published payment with the next scripted reply
    (a function of the request, an ErrorMessage, or None for silence)."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.published: list[bytes] = []
        self._futures: dict[str, Future[Any]] = {}

    def expect(self, event_id: str) -> Future[Any]:
        self._futures[event_id] = Future()
        return self._futures[event_id]

    def publish_raw(self, payload: bytes) -> None:
        self.published.append(payload)
        request = parse_event(payload)
        assert isinstance(request, PaymentRequest)
        future = self._futures.pop(request.event_id)  # expect() came first
        reply = self.replies.pop(0)
        if isinstance(reply, ErrorMessage):
            future.set_exception(HubError(reply))
        elif reply is not None:
            future.set_result(reply(request))


class FakeApp:
    def __init__(self, arrivals: list[ArrivedReceipt]) -> None:
        self.backlog = arrivals

    def wait_for(self, expected: ExpectedReceipt, timeout: float) -> ArrivedReceipt | None:
        return take_receipt(self.backlog, expected)


class FakePool(dict[str, FakeTerminal]):
    broker = Broker("127.0.0.1", 1)

    def __init__(self, app: FakeApp | None = None, **terminals: FakeTerminal) -> None:
        super().__init__(terminals)
        self.app = app or FakeApp([])

    def guest_app(self) -> FakeApp:
        return self.app


class FakeApi:
    def health(self) -> dict[str, str]:
        return {"status": "ok"}


def make_run(replies: list[Any], arrivals: list[ArrivedReceipt] | None = None
             ) -> tuple[Run, FakeTerminal]:
    terminal = FakeTerminal(replies)
    pool = FakePool(FakeApp(arrivals or []), pos=terminal)
    run = Run(api=FakeApi(), readers=pool, venue="v", timeout=0.05)  # type: ignore[arg-type]
    return run, terminal


# ------------------------------------------------------------ expectations


def test_pay_expect_checks_what_it_names() -> None:
    request = PaymentRequest(event_id="e1", ts=AT, credential=BAND.credential, amount=1200,
                             currency="USD", merchant_id="cafe", idempotency_key="k1")
    ok = answer(request)
    assert approve().matches(ok)
    assert approve(account="wallet", balance_after=8800).matches(ok)
    assert not approve(balance_after=8700).matches(ok)
    assert not approve(account="folio").matches(ok)
    assert not decline(PaymentReason.PIN_REQUIRED).matches(ok)
    assert not decline(PaymentReason.PIN_REQUIRED).matches(
        answer(request, "decline", "pin_wrong"))
    assert str(approve(account="wallet", balance_after=8800)) == "approve ok, wallet, balance 8800"
    assert describe_payment(ok) == "approve ok, wallet, balance 8800"
    assert same_answer(ok, ok) == []
    assert same_answer(ok, answer(request, transaction_id="t2")) == [
        "transaction_id 't2' was 't1'"]


# ------------------------------------------------------------------ steps


def test_pay_records_the_decision_the_request_and_its_bytes() -> None:
    run, terminal = make_run([answer, lambda r: answer(r, balance_after=1)])
    items = [LineItem(name="Tea", quantity=2, unit_amount=600)]
    first = run.pay("tea", "pos", BAND, 1200, approve(balance_after=8800), items=items,
                    account="wallet", pin="4321", key="key-1", **CAFE)
    assert first.ok and first.got == "approve ok, wallet, balance 8800"
    assert first.sent == terminal.published[0] and first.started is not None
    sent = parse_event(terminal.published[0])
    assert isinstance(sent, PaymentRequest)
    assert (sent.amount, sent.idempotency_key, sent.pin, sent.account, sent.items) == (
        1200, "key-1", "4321", "wallet", items)
    second = run.pay("tea", "pos", BAND, 1200, approve(balance_after=8800), **CAFE)
    assert not second.ok and second.got == "approve ok, wallet, balance 1"


def test_pay_without_a_reply_or_with_an_error_fails() -> None:
    error = ErrorMessage(code=ErrorCode.INTERNAL, detail="db down", event_id="x", topic="t")
    entry = Decision(event_id="x", outcome="deny", reason=EntryReason.DEVICE_NOT_A_READER,
                     text="no", decided_at=AT)
    run, _ = make_run([None, error, lambda r: entry])
    silent = run.pay("a", "pos", BAND, 100, approve(), **CAFE)
    failed = run.pay("b", "pos", BAND, 100, approve(), **CAFE)
    odd = run.pay("c", "pos", BAND, 100, approve(), **CAFE)
    assert (silent.ok, silent.got, silent.ms) == (False, "no reply in 0.05s", None)
    assert not failed.ok and "internal: db down" in failed.got
    assert (odd.ok, odd.got) == (False, "a decision reply")


def test_republish_sends_the_same_bytes_and_wants_the_same_transaction() -> None:
    run, terminal = make_run([answer, answer, lambda r: answer(r, transaction_id="t2")])
    first = run.pay("buy", "pos", BAND, 1200, approve(), **CAFE)
    again = run.republish("again", "pos", first)
    assert again.ok and terminal.published[1] == terminal.published[0]
    assert "same transaction t1" in again.note
    moved = run.republish("and again", "pos", first)
    assert not moved.ok  # approve ok as expected, but money moved twice
    assert moved.note == "transaction_id 't2' was 't1'"


def test_same_key_retry_is_compared_with_the_first_payment() -> None:
    run, _ = make_run([answer, lambda r: answer(r, balance_after=7600)])
    first = run.pay("buy", "pos", BAND, 1200, approve(), key="k", **CAFE)
    retry = run.pay("retry", "pos", BAND, 1200, approve(), key="k", same_as=first, **CAFE)
    assert not retry.ok and "balance_after 7600 was 8800" in retry.note


def test_republish_without_a_first_payment_fails() -> None:
    run, _ = make_run([None, answer])
    first = run.pay("buy", "pos", BAND, 1200, approve(), **CAFE)
    again = run.republish("again", "pos", first)
    assert (again.ok, again.note) == (False, "nothing to compare with")
    bare = run.fail("x", "pos", "-", "nothing")
    assert not run.republish("again", "pos", bare).ok


def test_check_turns_a_refused_call_into_a_failed_step() -> None:
    run, _ = make_run([])

    def refused() -> tuple[bool, str]:
        raise HubApiError("POST", "/transactions/t1/refunds", 409, "exceeds what is left")

    assert run.check("ok", "REST", "201", lambda: (True, "201")).ok
    step = run.check("refund", "REST", "201", refused)
    assert (step.ok, step.got) == (False, "HTTP 409: exceeds what is left")
    assert not run.check("wrong", "REST", "balance 1", lambda: (False, "balance 2")).ok


def receipt(**kw: Any) -> ArrivedReceipt:
    fields: dict[str, Any] = {
        "transaction_id": "t1", "type": "charge", "guest_id": "lead", "amount": 1200,
        "currency": "USD", "account": "wallet", "balance_after": 8800, "at": AT,
    }
    at = kw.pop("arrived", 10.0)
    fields.update(kw)
    return ArrivedReceipt("lead", Receipt(**fields), at)


def test_receipt_steps() -> None:
    expected = ExpectedReceipt("lead", "charge", "t1", amount=1200, balance_after=8800)
    run, _ = make_run([], [receipt(arrived=10.2), receipt(transaction_id="t2", balance_after=1,
                                                          arrived=10.3)])
    good = run.receipt("r", expected, within=1.0, since=10.0)
    assert good.ok and good.ms == pytest.approx(200.0)
    wrong = run.receipt("r2", ExpectedReceipt("lead", "charge", "t2", balance_after=8800),
                        within=1.0, since=10.0)
    assert not wrong.ok and wrong.got == "balance_after 1, expected 8800"
    missing = run.receipt("r3", expected, within=1.0, since=10.0)
    assert (missing.ok, missing.got) == (False, "no receipt in 1s")


def test_a_late_receipt_fails() -> None:
    run, _ = make_run([], [receipt(arrived=12.0)])
    late = run.receipt("r", ExpectedReceipt("lead", "charge", "t1"), within=1.0, since=10.0)
    assert not late.ok and "arrived after 1s" in late.got


def test_payment_steps_play_in_the_table() -> None:
    run, _ = make_run([answer, lambda r: answer(r, "decline", "pin_required")])
    console = Console(record=True, width=200)

    def script(r: Run) -> None:
        r.pay("buy", "pos", BAND, 1200, approve(balance_after=8800), **CAFE)
        r.pay("big", "pos", BAND, 6000, PayExpect("decline", PaymentReason.PIN_WRONG), **CAFE)

    assert play("shop", script, run, console) == 1
    text = console.export_text()
    assert "decline pin_wrong" in text and "decline pin_required" in text
    assert "1 of 2 steps differ from the script (steps 2)" in text


def test_resort_spend_is_a_documented_scenario() -> None:
    assert SCENARIOS["resort-spend"].__doc__


# --------------------------------------------------------------------- CLI

cli = CliRunner()
PAY = ["pay", "-d", "pos-cafe-1", "-c", "04A10000000001"]
DEAD = {"HUB_SIM_BROKER": "mqtt://127.0.0.1:1", "HUB_SIM_API": "http://127.0.0.1:1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amount", "1000", "--item", "Tea:2"], "name:quantity:unit_amount"),
        (["--amount", "1000", "--item", "Tea:2:450"], "add up to 900, not 1000"),
        (["--amount", "1000", "--pin", "12", "--merchant", "cafe"], "pin"),
        (["--amount", "1000", "--currency", "usd", "--merchant", "cafe"], "currency"),
        (["--amount", "0"], "amount"),
        (["--amount", "1000", "--account", "card"], "account"),
    ],
)
def test_pay_usage_errors(args: list[str], message: str) -> None:
    result = cli.invoke(app, PAY + args, env=DEAD)
    assert result.exit_code == 2
    assert message in result.output


def test_pay_unreachable_broker_is_exit_2() -> None:
    result = cli.invoke(app, PAY + ["--amount", "1200", "--merchant", "cafe"], env=DEAD)
    assert result.exit_code == 2
    assert "mqtt://127.0.0.1:1" in result.output


def test_pay_looks_up_the_merchant_through_the_api() -> None:
    result = cli.invoke(app, PAY + ["--amount", "1200"], env=DEAD)
    assert result.exit_code == 2
    assert "hub unreachable" in result.output and "merchant" in result.output


# -------------------------------------------------------------------- REST


def recording_api(responses: dict[tuple[str, str], httpx.Response]
                  ) -> tuple[HubApi, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[(request.method, request.url.path)]

    return HubApi("http://hub.test", transport=httpx.MockTransport(handler)), seen


TXN = {"id": "t1", "type": "topup", "approved": True, "reason": "ok", "amount": 10000,
       "currency": "USD", "balance_after": 10000, "idempotency_key": "k",
       "created_at": "2026-11-23T10:00:00Z"}


def test_top_up_posts_the_body_and_wants_201() -> None:
    path = "/api/v1/accounts/w1/topups"
    api, seen = recording_api({("POST", path): httpx.Response(201, json=TXN)})
    txn = api.top_up("w1", 10000, "k")
    assert (txn.id, txn.balance_after) == ("t1", 10000)
    assert json.loads(seen[0].content) == {"amount": 10000, "idempotency_key": "k",
                                           "method": "card"}
    api, _ = recording_api({("POST", path): httpx.Response(200, json=TXN)})
    with pytest.raises(HubApiError, match="expected HTTP 201") as info:
        api.top_up("w1", 10000, "k")
    assert info.value.status == 200


def test_spending_policy_and_refund_leave_out_unset_fields() -> None:
    policy = {"guest_id": "kid", "payer_guest_id": "lead", "payment_enabled": True,
              "daily_limit": 1500, "pin_threshold": None, "has_pin": False}
    api, seen = recording_api({
        ("PUT", "/api/v1/guests/kid/spending-policy"): httpx.Response(200, json=policy),
        ("POST", "/api/v1/transactions/t1/refunds"): httpx.Response(201, json=TXN),
    })
    assert api.set_spending_policy("kid", payer_guest_id="lead", daily_limit=1500).daily_limit \
        == 1500
    api.refund("t1", "r1")
    assert json.loads(seen[0].content) == {"payment_enabled": True, "daily_limit": 1500,
                                           "payer_guest_id": "lead", "reset_pin_lock": False}
    assert json.loads(seen[1].content) == {"idempotency_key": "r1"}  # all that is left
