"""What a presented credential can be: one vocabulary, mapped by entry and payment alike."""

from __future__ import annotations

import pytest

from devices.contract import EntryReason, PaymentReason
from devices.phone_key import Reason
from hub import entry, payment
from hub.models import Credential, CredentialKind
from hub.presented import _PHONE_PROBLEMS, CredentialProblem, Presented, problem_of
from tests.hub.test_entry import NOW, context
from tests.hub.test_payment import ctx

BAND = Credential(id="c", guest_id="g", kind=CredentialKind.WRISTBAND, identifier="04AA")
SUN_BAND = Credential(id="c", guest_id="g", kind=CredentialKind.WRISTBAND,
                      identifier="04AA", sun=True)
SIGNED_KEY = Credential(id="k", guest_id="g", kind=CredentialKind.PHONE_KEY,
                        identifier="pk-1", key_jti="jti-1")


@pytest.mark.parametrize("problem", list(CredentialProblem))
def test_every_problem_maps_to_an_entry_reason_and_a_payment_reason(
        problem: CredentialProblem) -> None:
    # A problem without a reason would be a KeyError in the decision: the reader or till
    # would get "internal" and the log a traceback, as outside_validity once did at a POS.
    at_door = entry.decide_entry(context(credential_problem=problem), NOW)
    assert not at_door.allowed and at_door.reason is entry.PROBLEMS[problem]
    assert at_door.text == entry.TEXTS[at_door.reason]
    at_till = payment.decide_payment(ctx(credential_problem=problem))
    assert not at_till.approved and at_till.reason is payment.PROBLEMS[problem]
    assert at_till.text == payment.TEXTS[at_till.reason]


def test_the_tables_map_only_problems_to_reasons_of_their_own_kind() -> None:
    assert set(entry.PROBLEMS) == set(CredentialProblem) == set(payment.PROBLEMS)
    assert all(isinstance(r, EntryReason) for r in entry.PROBLEMS.values())
    assert all(isinstance(r, PaymentReason) for r in payment.PROBLEMS.values())


def test_the_wire_reasons_are_those_of_before() -> None:
    assert {p.value: r.value for p, r in entry.PROBLEMS.items()} == {
        "forged": "credential_forged", "replayed": "credential_replayed",
        "insecure": "insecure_credential", "expired": "outside_validity",
        "not_yet_valid": "outside_validity", "revoked": "credential_revoked"}
    assert {p.value: r.value for p, r in payment.PROBLEMS.items()} == {
        p.value: r.value for p, r in entry.PROBLEMS.items()}


def test_a_phone_key_s_failures_are_problems() -> None:
    assert _PHONE_PROBLEMS[Reason.KEY_EXPIRED] is CredentialProblem.EXPIRED
    assert _PHONE_PROBLEMS[Reason.KEY_NOT_YET_VALID] is CredentialProblem.NOT_YET_VALID
    assert _PHONE_PROBLEMS[Reason.KEY_REVOKED] is CredentialProblem.REVOKED
    assert all(isinstance(p, CredentialProblem) for p in _PHONE_PROBLEMS.values())


@pytest.mark.parametrize(("presented", "credential", "kw", "expected"), [
    (Presented(CredentialKind.PHONE_KEY, "j", forged=True), None, {}, CredentialProblem.FORGED),
    (Presented(CredentialKind.PHONE_KEY, "j", forged=True, problem=CredentialProblem.EXPIRED),
     SIGNED_KEY, {}, CredentialProblem.EXPIRED),
    (Presented(CredentialKind.PHONE_KEY, "j", secure=True, challenge="c" * 16), SIGNED_KEY,
     {"fresh_challenge": False}, CredentialProblem.REPLAYED),
    (Presented(CredentialKind.WRISTBAND, "04AA"), SUN_BAND, {}, CredentialProblem.FORGED),
    (Presented(CredentialKind.PHONE_KEY, "pk-1"), SIGNED_KEY, {"allow_plain_uid": True},
     CredentialProblem.INSECURE),
    (Presented(CredentialKind.WRISTBAND, "04AA", secure=True, counter=3), SUN_BAND,
     {"counter_advanced": False}, CredentialProblem.REPLAYED),
    (Presented(CredentialKind.WRISTBAND, "04AA"), BAND, {}, CredentialProblem.INSECURE),
    (Presented(CredentialKind.WRISTBAND, "04AA"), BAND, {"allow_plain_uid": True}, None),
    (Presented(CredentialKind.WRISTBAND, "04AA", secure=True, counter=3), SUN_BAND,
     {"counter_advanced": True}, None),
])
def test_problem_of_names_the_problem(presented: Presented, credential: Credential | None,
                                      kw: dict[str, bool],
                                      expected: CredentialProblem | None) -> None:
    given = {"counter_advanced": False, "allow_plain_uid": False} | kw
    assert problem_of(presented, credential, **given) is expected


@pytest.mark.parametrize("reason", list(entry.TEXTS))
def test_a_key_is_never_called_a_band_at_a_door(reason: EntryReason) -> None:
    assert "band" not in entry.text_of(reason, CredentialKind.PHONE_KEY).lower()


@pytest.mark.parametrize("reason", list(payment.TEXTS))
def test_a_key_is_never_called_a_band_at_a_till(reason: PaymentReason) -> None:
    assert "band" not in payment.text_of(reason, CredentialKind.PHONE_KEY).lower()


def test_denials_use_the_words_of_what_was_presented() -> None:
    forged = {"credential_problem": CredentialProblem.FORGED}
    key = entry.decide_entry(context(presented_kind=CredentialKind.PHONE_KEY, **forged), NOW)
    band = entry.decide_entry(context(presented_kind=CredentialKind.WRISTBAND, **forged), NOW)
    assert key.reason is band.reason is EntryReason.CREDENTIAL_FORGED  # the wire is one
    assert (key.text, band.text) == ("Key not genuine - please see staff",
                                     "Band not genuine - please see staff")
    unknown = entry.decide_entry(context(presented_kind=CredentialKind.PHONE_KEY,
                                         credential=None), NOW)
    assert unknown.text == "Key not recognised"
    till = payment.decide_payment(ctx(presented_kind=CredentialKind.PHONE_KEY, **forged))
    assert till.text == "Key not genuine - please see staff"
    # Not about the credential: the same words whatever was presented.
    no_ticket = entry.decide_entry(context(presented_kind=CredentialKind.PHONE_KEY,
                                           entitlements=()), NOW)
    assert no_ticket.text == entry.TEXTS[EntryReason.NO_ENTITLEMENT]
