"""resort-spend: a family's money at the resort, from the first top-up to check-out.

Each run creates its own lead guest (wristband, a room-109 stay, a wallet and a
room folio, a PIN) and child (wristband, paid for by the lead, a daily limit),
so it can be replayed against the same hub as often as you like. The guests'
phone apps follow both notifications topics before the first tap, and every
receipt the hub sends is checked; a receipt nobody expected fails the last step.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from devices.contract import LineItem, PaymentReason, PaymentRequest, utcnow
from simulators.readers import ExpectedReceipt, Wristband
from simulators.rest import HubApiError, Merchant
from simulators.scenarios.runner import PayExpect, Run, StepResult, approve, decline

ROOM = "room-109"
CAFE, SHOP, BAR = "pos-cafe-1", "pos-shop-1", "pos-bar-1"
PIN, WRONG_PIN, PIN_THRESHOLD = "4321", "0000", 5000
CHILD_DAILY_LIMIT = 1500
TOP_UP = 10_000
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
RECEIPT_WITHIN = 1.0  # seconds from the request to the guest's receipt
REST = "REST"
BREAKFAST = (
    LineItem(name="Flat white", quantity=2, unit_amount=450),
    LineItem(name="Croissant", quantity=1, unit_amount=300),
)


def resort_spend(run: Run) -> None:
    """Wallet top-up, PIN, a child on the parent's folio, duplicates, refunds, check-out."""
    api = run.api
    now = utcnow()
    suffix = secrets.token_hex(3)

    # Which merchant each terminal takes payments for, its name and currency: from the hub.
    merchants = {m.id: m for m in api.merchants()}
    merchant_of: dict[str, Merchant] = {}
    for device in (CAFE, SHOP, BAR):
        merchant_id = api.device(device).merchant_id
        if merchant_id is None or merchant_id not in merchants:
            raise HubApiError("GET", f"/devices/{device}", 200,
                              f"terminal has no known merchant ({merchant_id!r})")
        merchant_of[device] = merchants[merchant_id]

    def pay(title: str, device: str, holder: Wristband, amount: int, expect: PayExpect,
            **options: Any) -> StepResult:
        """A payment at ``device``, for its merchant and in its currency."""
        merchant = merchant_of[device]
        return run.pay(title, device, holder, amount, expect, merchant=merchant.id,
                       currency=merchant.currency, **options)

    lead = api.create_guest(f"Resort Spend {suffix}", display_name=f"Lead {suffix}")
    lead_band = Wristband.random()
    api.create_credential(lead.id, "wristband", lead_band.uid, label="resort-spend lead")
    stay = api.create_entitlement(lead.id, "room", [ROOM], now - HOUR, now + 2 * DAY)
    wallet = api.create_account(lead.id, run.venue, "wallet")
    folio = api.create_account(lead.id, run.venue, "folio", stay_id=stay.id)
    api.set_spending_policy(lead.id, pin=PIN, pin_threshold=PIN_THRESHOLD)

    child = api.create_guest(f"Resort Spend Kid {suffix}", display_name=f"Kid {suffix}")
    child_band = Wristband.random()
    api.create_credential(child.id, "wristband", child_band.uid, label="resort-spend child")
    api.set_spending_policy(child.id, payer_guest_id=lead.id, daily_limit=CHILD_DAILY_LIMIT)
    run.note(f"lead {lead.id} band {lead_band.uid} wallet {wallet.id} folio {folio.id} "
             f"(stay {stay.id}); child {child.id} band {child_band.uid}")

    app = run.readers.guest_app()
    app.follow(lead.id)  # before any money moves: no receipt may slip past
    app.follow(child.id)

    phone = {lead.id: "lead's phone", child.id: "child's phone"}

    def receipt_of(step: StepResult, guest_id: str, title: str, **fields: object) -> None:
        """The charge receipt of a payment step, to ``guest_id``, within a second."""
        decision = step.payment
        expected = ExpectedReceipt(
            guest_id, "charge", decision.transaction_id if decision else None,
            **fields,  # type: ignore[arg-type]
        )
        if decision is None or decision.transaction_id is None or step.started is None:
            run.fail(title, phone[guest_id], str(expected), "no approved payment to look for")
            return
        run.receipt(title, expected, within=RECEIPT_WITHIN, since=step.started,
                    where=phone[guest_id])

    # 1. Money in: a top-up at the front desk.
    topup_key = f"rs-{suffix}-topup"
    topup: dict[str, str] = {}

    def do_topup() -> tuple[bool, str]:
        txn = api.top_up(wallet.id, TOP_UP, topup_key)
        topup["id"] = txn.id
        return (txn.type == "topup" and txn.balance_after == TOP_UP,
                f"201 {txn.type} {txn.amount}, balance {txn.balance_after}")

    run.check(f"top up the lead's wallet {TOP_UP}", REST, f"201 topup {TOP_UP}, balance {TOP_UP}",
              do_topup)
    if "id" in topup:
        run.receipt("top-up receipt to the lead", ExpectedReceipt(
            lead.id, "topup", topup["id"], amount=TOP_UP, account="wallet",
            balance_after=TOP_UP), within=run.timeout, where=phone[lead.id])

    # 2. Breakfast from the wallet, with line items.
    breakfast = pay("lead buys breakfast (2 items)", CAFE, lead_band, 1200,
                    approve(account="wallet", balance_after=8800), account="wallet",
                    items=BREAKFAST)
    receipt_of(breakfast, lead.id, "breakfast receipt to the lead", amount=1200,
               account="wallet", balance_after=8800, merchant_name=merchant_of[CAFE].name,
               items=BREAKFAST)

    # 3. Above the PIN threshold: no PIN, a wrong one, the right one (a new key each attempt).
    pay("lead 6000 at the shop, no PIN", SHOP, lead_band, 6000,
        decline(PaymentReason.PIN_REQUIRED), account="wallet")
    pay("again with a wrong PIN", SHOP, lead_band, 6000,
        decline(PaymentReason.PIN_WRONG), account="wallet", pin=WRONG_PIN)
    souvenir = pay("again with the right PIN", SHOP, lead_band, 6000,
                   approve(account="wallet", balance_after=2800), account="wallet", pin=PIN)
    receipt_of(souvenir, lead.id, "shop receipt to the lead", amount=6000, account="wallet",
               balance_after=2800, merchant_name=merchant_of[SHOP].name)

    # 4. The child pays; the lead's room folio is charged; both get the receipt.
    snack = pay("child buys a snack (auto: lead's folio)", CAFE, child_band, 1000,
                approve(account="folio"))
    receipt_of(snack, child.id, "snack receipt to the child", amount=1000, account="folio",
               merchant_name=merchant_of[CAFE].name)
    receipt_of(snack, lead.id, "snack receipt to the lead (who pays)", amount=1000,
               account="folio", merchant_name=merchant_of[CAFE].name, spent_by=child.id)
    pay("child buys 800 more (over 1500 today)", CAFE, child_band, 800,
        decline(PaymentReason.DAILY_LIMIT_EXCEEDED))

    # 5. Duplicates: the same bytes again, and a new event with the same key.
    balance_before = api.account(wallet.id).balance
    run.republish("breakfast request delivered again", CAFE, breakfast)
    breakfast_key = (breakfast.event.idempotency_key
                     if isinstance(breakfast.event, PaymentRequest) else None)
    if breakfast_key is None:
        run.fail("new event, breakfast's key", CAFE, "same approval", "no breakfast to repeat")
    else:
        pay("new event, breakfast's key", CAFE, lead_band, 1200,
            approve(account="wallet", balance_after=8800), account="wallet",
            items=BREAKFAST, key=breakfast_key, same_as=breakfast)

    def wallet_unchanged() -> tuple[bool, str]:
        balance = api.account(wallet.id).balance
        return balance == balance_before, f"balance {balance}"

    run.check("wallet balance after the duplicates", REST, f"balance {balance_before}",
              wallet_unchanged)
    if breakfast_key is not None:
        pay("breakfast's key with amount 1300", CAFE, lead_band, 1300,
            decline(PaymentReason.IDEMPOTENCY_CONFLICT), account="wallet", key=breakfast_key)

    # 6. Not enough in the wallet (5000 is not above the PIN threshold).
    pay("lead 5000 from a 2800 wallet", SHOP, lead_band, 5000,
        decline(PaymentReason.INSUFFICIENT_FUNDS), account="wallet")

    # 7. Staff refunds part of breakfast, then try to refund more than is left.
    charge_id = breakfast.payment.transaction_id if breakfast.payment else None
    refund: dict[str, str] = {}

    def partial_refund() -> tuple[bool, str]:
        assert charge_id is not None
        txn = api.refund(charge_id, f"rs-{suffix}-refund-1", amount=200)
        refund["id"] = txn.id
        return (txn.type == "refund" and txn.amount == 200 and txn.balance_after == 3000,
                f"201 {txn.type} {txn.amount}, balance {txn.balance_after}")

    def too_much_refund() -> tuple[bool, str]:
        assert charge_id is not None
        try:
            txn = api.refund(charge_id, f"rs-{suffix}-refund-2", amount=1001)
        except HubApiError as exc:
            return exc.status == 409, f"{exc.status} {exc.detail}"
        return False, f"201 {txn.type} {txn.amount} (refunded!)"

    if charge_id is None:
        run.fail("staff refunds 200 of breakfast", REST, "201", "no breakfast charge")
        run.fail("refund 1001 more", REST, "409", "no breakfast charge")
    else:
        run.check("staff refunds 200 of breakfast", REST, "201 refund 200, balance 3000",
                  partial_refund)
        if "id" in refund:
            run.receipt("refund receipt to the lead", ExpectedReceipt(
                lead.id, "refund", refund["id"], amount=200, account="wallet",
                balance_after=3000), within=run.timeout, where=phone[lead.id])
        run.check("refund 1001 more (1000 left)", REST, "409", too_much_refund)

    # 8. Drinks on the room, then check-out.
    drinks = pay("lead's drinks on the room", BAR, lead_band, 2500, approve(account="folio"),
                 account="folio")
    receipt_of(drinks, lead.id, "bar receipt to the lead", amount=2500, account="folio",
               merchant_name=merchant_of[BAR].name)

    settlement: dict[str, str] = {}

    def check_out() -> tuple[bool, str]:
        txn = api.settle(folio.id, f"rs-{suffix}-checkout")
        settlement["id"] = txn.id
        return (txn.type == "settlement" and txn.amount == 3500 and txn.balance_after == 0,
                f"201 {txn.type} {txn.amount}, balance {txn.balance_after}")

    run.check("check-out: settle the folio", REST, "201 settlement 3500, balance 0", check_out)
    if "id" in settlement:
        run.receipt("check-out receipt to the lead", ExpectedReceipt(
            lead.id, "settlement", settlement["id"], amount=3500, account="folio",
            balance_after=0), within=run.timeout, where=phone[lead.id])

    def folio_closed() -> tuple[bool, str]:
        account = api.account(folio.id)
        lines = api.statement(folio.id).lines
        total = sum(line.amount for line in lines)
        seen = (f"open {str(account.open).lower()}, balance {account.balance}, "
                f"{len(lines)} lines sum {total}")
        return not account.open and account.balance == 0 and len(lines) == 3 and total == 0, seen

    run.check("folio after check-out", REST, "open false, balance 0, 3 lines sum 0",
              folio_closed)
    pay("drinks on the room after check-out", BAR, lead_band, 1000,
        decline(PaymentReason.NO_ACCOUNT), account="folio")

    # 9. Nothing else reached the phones: no receipt for a decline or a duplicate.
    def no_strays() -> tuple[bool, str]:
        strays = [str(r) for r in app.leftovers(settle=0.3)]
        strays += [f"invalid receipt on {topic}: {why}" for topic, _, why in app.invalid]
        return not strays, "; ".join(strays) or "none"

    run.check("no other receipts", "both phones", "none", no_strays)
