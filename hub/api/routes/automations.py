"""Automations: the shipped rules and the venue's own, read, changed, exported and imported.

A rule stored with a shipped rule's id replaces it (PATCH ``enabled`` on a shipped
rule stores such a copy); DELETE removes a stored rule (a shipped one comes back) and
refuses a shipped one (409: disable it instead). The running hub reads changes
within two seconds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from hub.api.deps import (
    ADMIN,
    GUEST_DATA_READERS,
    SETUP_READERS,
    STAFF,
    AuditDep,
    Limit,
    Offset,
    SessionDep,
    require_roles,
)
from hub.automations import exchange, ruleset
from hub.automations.catalogue import shipped
from hub.automations.rules import Rule, RuleError, parse_rule, rule_to_dict
from hub.models import AutomationRule, RunStatus
from hub.schemas import Name, Slug, _In
from hub.store import automations as store
from hub.store.errors import Conflict, NotFound

router = APIRouter(prefix="/automations", tags=["automations"])

WRITERS = (ADMIN, STAFF)
MAX_IMPORT_BYTES = 1_000_000
RuleId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                             description="The rule's id")]


# ------------------------------------------------------------------- models


class AutomationAction(_In):
    """One action: ``target`` is a device id or ``room:<kind>``; ``name`` a command's name."""

    kind: str = Field(max_length=32)
    target: str | None = Field(default=None, max_length=80)
    name: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class AutomationPut(_In):
    """A whole rule (PUT creates or replaces it); the id is the path's."""

    id: Slug | None = None
    name: Name
    purpose: str = Field(max_length=20)
    trigger: str = Field(max_length=32)
    filters: dict[str, Any] = Field(default_factory=dict)
    conditions: list[dict[str, Any]] = Field(default_factory=list, max_length=20)
    actions: list[AutomationAction] = Field(max_length=20)
    enabled: bool = True


class AutomationPatch(_In):
    enabled: bool


class AutomationPublic(BaseModel):
    id: str
    name: str
    purpose: str
    trigger: str
    filters: dict[str, Any]
    conditions: list[dict[str, Any]]
    actions: list[AutomationAction]
    enabled: bool
    source: Literal["shipped", "stored"]
    overrides_shipped: bool = Field(description="A stored rule that replaces a shipped one")
    updated_at: datetime | None = None


class AutomationImport(BaseModel):
    imported: list[str] = Field(description="The ids of the rules created or replaced")
    rules: list[AutomationPublic]


class AutomationStats(BaseModel):
    """What a rule did, over every hub worker sharing the database."""

    fired: int = Field(0, description="Actions carried out (sent)")
    failed: int = Field(0, description="Actions that failed after every retry")
    queued: int = Field(0, description="Commands waiting for an offline appliance")
    expired: int = Field(0, description="Queued commands the appliance was not back for")
    overridden: int = Field(0, description="Commands the guest undid by hand within 10 min")


class AutomationRunPublic(BaseModel):
    id: int
    rule_id: str
    action: str
    guest_id: str | None
    device_id: str | None
    command_id: str | None
    name: str | None
    params: dict[str, Any]
    status: RunStatus
    detail: str | None
    created_at: datetime
    sent_at: datetime | None
    overridden_at: datetime | None


# ------------------------------------------------------------------ helpers


def _shipped_ids() -> set[str]:
    return {r.id for r in shipped()}


def _public(rule: Rule, row: AutomationRule | None, shipped_ids: set[str]) -> AutomationPublic:
    return AutomationPublic(**rule_to_dict(rule),
                            source="stored" if row is not None else "shipped",
                            overrides_shipped=row is not None and rule.id in shipped_ids,
                            updated_at=row.updated_at if row is not None else None)


def _rule_of_body(session: SessionDep, rule_id: str, body: AutomationPut) -> Rule:
    """The rule a PUT holds, checked for saving: RuleError (422) names every problem."""
    if body.id is not None and body.id != rule_id:
        raise RuleError([f"the body's id {body.id!r} is not the path's {rule_id!r}"])
    return parse_rule({**body.model_dump(exclude={"id"}), "id": rule_id},
                      known_devices=ruleset.known_devices(session))


def _find(session: SessionDep, rule_id: str) -> tuple[Rule, AutomationRule | None]:
    row = store.rule_row(session=session, rule_id=rule_id)
    if row is not None:
        return ruleset.rule_of(row), row
    for rule in shipped():
        if rule.id == rule_id:
            return rule, None
    raise NotFound("automation", rule_id)


async def yaml_body(request: Request) -> str:
    """The request's body as text (YAML; JSON is YAML too)."""
    if int(request.headers.get("content-length") or 0) > MAX_IMPORT_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            detail=f"an import is at most {MAX_IMPORT_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            detail=f"an import is at most {MAX_IMPORT_BYTES} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RuleError(["the body is not UTF-8 text"]) from None


YAML_BODY = {"requestBody": {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string"}},
    "text/plain": {"schema": {"type": "string"}}}}}


# ------------------------------------------------------------------- routes


@router.get("", response_model=list[AutomationPublic],
            dependencies=[require_roles(*SETUP_READERS)])
def list_automations(session: SessionDep) -> list[AutomationPublic]:
    rows = {row.id: row for row in store.rule_rows(session=session)}
    ids = _shipped_ids()
    return [_public(rule, rows.get(rule.id), ids) for rule in ruleset.load_rules(session)]


@router.get("/export", response_class=PlainTextResponse,
            dependencies=[require_roles(*SETUP_READERS)],
            responses={200: {"content": {"text/plain": {}}}})
def export_automations(session: SessionDep) -> str:
    """Every rule in force as YAML, for ``POST /automations/import``."""
    return exchange.export_yaml(ruleset.load_rules(session))


@router.get("/stats", response_model=dict[str, AutomationStats],
            dependencies=[require_roles(*SETUP_READERS)])
def automation_stats(session: SessionDep) -> dict[str, AutomationStats]:
    """Per rule: actions fired, failed, queued, expired, and overridden by the guest."""
    stats = {rule.id: AutomationStats() for rule in ruleset.load_rules(session)}
    for rule_id, run_status, count in store.run_counts(session=session):
        entry = stats.setdefault(rule_id, AutomationStats())
        name = {"sent": "fired"}.get(run_status.value, run_status.value)
        setattr(entry, name, getattr(entry, name) + count)
    for rule_id, count in store.overridden_counts(session=session):
        stats.setdefault(rule_id, AutomationStats()).overridden = count
    return stats


@router.get("/runs", response_model=list[AutomationRunPublic],
            dependencies=[require_roles(*GUEST_DATA_READERS)])
def automation_runs(session: SessionDep,
                    rule_id: Annotated[str | None, Query(max_length=64)] = None,
                    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
                    device_id: Annotated[str | None, Query(max_length=64)] = None,
                    limit: Limit = 100, offset: Offset = 0) -> list[AutomationRunPublic]:
    """What automations did, newest first: each action with its status and parameters.

    Parameters hold guests' data (a name in a greeting, a heart rate in an alert): only
    those who may read guests' data may read them.
    """
    rows = store.runs(session=session, rule_id=rule_id, status=run_status,
                      device_id=device_id, limit=limit, offset=offset)
    return [AutomationRunPublic.model_validate(row, from_attributes=True) for row in rows]


@router.post("/import", response_model=AutomationImport, openapi_extra=YAML_BODY,
             dependencies=[require_roles(*WRITERS)])
def import_automations(text: Annotated[str, Depends(yaml_body)], session: SessionDep,
                       audit: AuditDep) -> AutomationImport:
    """Create or replace the rules of a YAML document: all of them, or none (422)."""
    rules = exchange.import_yaml(text, known_devices=ruleset.known_devices(session))
    if not rules:
        raise RuleError(["the document holds no rule"])
    for rule in rules:
        ruleset.save(session, rule)
    audit.record("automation.import", "automations",
                 {"ids": [r.id for r in rules], "rules": [rule_to_dict(r) for r in rules]})
    ids = _shipped_ids()
    return AutomationImport(imported=[r.id for r in rules], rules=[
        _public(rule, store.rule_row(session=session, rule_id=rule.id), ids) for rule in rules])


@router.get("/{rule_id}", response_model=AutomationPublic,
            dependencies=[require_roles(*SETUP_READERS)])
def get_automation(rule_id: RuleId, session: SessionDep) -> AutomationPublic:
    rule, row = _find(session, rule_id)
    return _public(rule, row, _shipped_ids())


@router.put("/{rule_id}", response_model=AutomationPublic,
            dependencies=[require_roles(*WRITERS)],
            responses={201: {"description": "Created"}, 422: {"description": "Invalid rule"}})
def put_automation(rule_id: RuleId, body: AutomationPut, session: SessionDep, audit: AuditDep,
                   response: Response) -> AutomationPublic:
    """Create or replace a rule (one with a shipped rule's id replaces the shipped one)."""
    rule = _rule_of_body(session, rule_id, body)
    created = ruleset.save(session, rule)
    audit.record("automation.create" if created else "automation.replace",
                 f"automation:{rule_id}", body.model_dump(mode="json", exclude_unset=True))
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _public(rule, store.rule_row(session=session, rule_id=rule_id), _shipped_ids())


@router.patch("/{rule_id}", response_model=AutomationPublic,
              dependencies=[require_roles(*WRITERS)])
def patch_automation(rule_id: RuleId, body: AutomationPatch, session: SessionDep,
                     audit: AuditDep) -> AutomationPublic:
    """Enable or disable a rule; a shipped rule is stored as a copy that says so."""
    rule, _row = _find(session, rule_id)
    rule = replace(rule, enabled=body.enabled)
    ruleset.save(session, rule)
    audit.record("automation.update", f"automation:{rule_id}", {"enabled": body.enabled})
    return _public(rule, store.rule_row(session=session, rule_id=rule_id), _shipped_ids())


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require_roles(*WRITERS)],
               responses={409: {"description": "A shipped rule: disable it instead"}})
def delete_automation(rule_id: RuleId, session: SessionDep, audit: AuditDep) -> Response:
    """Remove a stored rule; a shipped rule it replaced is in force again."""
    if not store.delete_rule(session=session, rule_id=rule_id):
        if rule_id in _shipped_ids():
            raise Conflict(f"automation {rule_id!r} is shipped: it cannot be deleted, "
                           "disable it with PATCH {\"enabled\": false}")
        raise NotFound("automation", rule_id)
    audit.record("automation.delete", f"automation:{rule_id}",
                 {"restores_shipped": rule_id in _shipped_ids()})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
