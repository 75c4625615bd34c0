"""Programs, event types, rules and their versions, simulation, balances, ledger history and
direct adjustments (the synchronous API)."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import re
import types
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from accrual_platform import contract, errors, facts, pages, text
from accrual_platform.contract import outbox_row
from accrual_platform.db import Database, decimal_str, utcnow
from accrual_platform.ids import new_id
from sqlalchemy.orm import Session

from accrual_rules import ledger, sandbox, storage
from accrual_rules.domain.evaluation import (
    CAP_FIELDS,
    MAX_POINTS,
    ROUNDINGS,
    Caps,
    Evaluation,
    EventFacts,
    RuleSpec,
    check_event_type,
    context_for,
    evaluate,
)
from accrual_rules.domain.expressions import LimitExceeded, branches, check_limits
from accrual_rules.domain.triggers import normalise_triggers
from accrual_rules.rows import program_policy, rule_spec
from accrual_rules.sandbox import Job

POLICIES = ("CREATE", "REJECT")
STATUSES = ("ACTIVE", "SUSPENDED")
EVENT_TYPE_POLICIES = ("OPEN", "REGISTERED")
PROPERTY_TYPES = ("STRING", "NUMBER", "BOOLEAN", "OBJECT", "ARRAY")
# Names of event types and properties: what ingest accepts (1 to 255 characters), without
# surrounding whitespace or control characters.
_NAME = re.compile(r"^(?=\S)[^\x00-\x1f]{1,255}(?<=\S)$")
_NAME_RULE = "must be 1 to 255 characters without surrounding spaces"


def _check_type_name(v: list[errors.FieldViolation], field: str, value: str) -> None:
    """The shared control-character rule first (it names the character), then the shape."""
    before = len(v)
    text.check_name(v, field, value)
    if len(v) == before and not _NAME.match(value):
        v.append(errors.FieldViolation(field, _NAME_RULE))
_PROPERTY_REF = re.compile(r"\bproperties\.([A-Za-z_][A-Za-z0-9_]*)")
_SAMPLE_VALUES: dict[str, Any] = {"STRING": "sample", "NUMBER": 1, "BOOLEAN": True, "OBJECT": {},
                                  "ARRAY": []}


def parse_uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError):
        raise errors.InvalidArgument.field(field, "must be a UUID") from None


def _decimal(value: str, field: str, *, minimum: decimal.Decimal | None = None,
             exclusive: bool = False) -> decimal.Decimal:
    try:
        d = decimal.Decimal(value.strip())
    except (decimal.InvalidOperation, AttributeError):
        raise errors.InvalidArgument.field(field, "must be a decimal number") from None
    if not d.is_finite() or abs(d) >= MAX_POINTS:
        raise errors.InvalidArgument.field(field, "must be a finite number below 1e18")
    if d.as_tuple().exponent < -10:  # type: ignore[operator]
        raise errors.InvalidArgument.field(field, "must have at most 10 decimal places")
    if minimum is not None and (d <= minimum if exclusive else d < minimum):
        raise errors.InvalidArgument.field(field, f"must be {'>' if exclusive else '>='} {minimum}")
    return d


def validate_tiers(tiers: Sequence[Mapping[str, str]], v: list[errors.FieldViolation]) -> list[dict[str, str]]:
    """Tiers in strictly increasing ``min_lifetime_points`` (the first may start above 0: below
    it a participant has no tier and multiplier 1), unique names, multiplier > 0."""
    clean: list[dict[str, str]] = []
    names: set[str] = set()
    previous: decimal.Decimal | None = None
    for i, t in enumerate(tiers):
        name = t.get("name", "").strip()
        if not name or len(name) > 200:
            v.append(errors.FieldViolation(f"tiers[{i}].name", "is required (1 to 200 characters)"))
        elif name in names:
            v.append(errors.FieldViolation(f"tiers[{i}].name", f"must be unique ({errors.excerpt(name)} repeats)"))
        text.check_name(v, f"tiers[{i}].name", name)
        names.add(name)
        try:
            minimum = _decimal(t.get("min_lifetime_points") or "0", f"tiers[{i}].min_lifetime_points",
                               minimum=decimal.Decimal(0))
            if previous is not None and minimum <= previous:
                raise errors.InvalidArgument.field(
                    f"tiers[{i}].min_lifetime_points",
                    f"must be greater than the previous tier's ({decimal_str(previous)}); "
                    "list tiers from lowest to highest without overlaps")
            previous = minimum
            mult = _decimal(t.get("multiplier") or "1", f"tiers[{i}].multiplier",
                            minimum=decimal.Decimal(0), exclusive=True)
            clean.append({"name": name, "min_lifetime_points": decimal_str(minimum),
                          "multiplier": decimal_str(mult)})
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
    return clean


def _expression_error(field: str, message: str, position: tuple[int, int] | None) -> errors.FieldViolation:
    where = f" at line/column {position[0]}:{position[1]}" if position else ""
    return errors.FieldViolation(field, f"{message}{where}")


def _samples(source: str, declared: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Sample event properties to try an expression on at save time: the registered event
    type's properties (when the rule names one), and every referenced property as a number."""
    samples = []
    if declared:
        samples.append({p["name"]: _SAMPLE_VALUES[p["type"]] for p in declared})
    samples.append({name: 1 for name in _PROPERTY_REF.findall(source)})
    return samples


_DIED = {
    sandbox.TIMEOUT: "runs past the {deadline:g} ms CPU deadline on a sample event",
    sandbox.EXHAUSTED: "asks for more than the {memory} MB memory limit on a sample event",
    sandbox.CRASHED: "crashes the expression engine on a sample event",
}


def check_expressions(fields: Mapping[str, Any], declared: Sequence[Mapping[str, Any]] | None,
                      evaluator: sandbox.Sandbox) -> None:
    """Check a rule's condition and formula before anything runs them for real.

    First the static limits (length, nesting, literal ranges), in this process: they need no
    engine. Then, in the sandbox: the source must compile, a formula must give a number and a
    condition a boolean on sample events (errors that depend on real data are not refused),
    and neither the whole source nor any branch of its ``?:`` (which a sample may not take)
    may go over the sandbox's budget or crash it."""
    v: list[errors.FieldViolation] = []
    limits: dict[str, str] = {}
    sources = {f: fields[f] for f in ("condition", "formula") if str(fields[f]).strip()}
    for field, source in sources.items():
        try:
            check_limits(source)
        except LimitExceeded as exc:
            v.append(errors.FieldViolation(field, exc.message))
            limits[field] = exc.limit
    if v:
        raise errors.InvalidArgument(f"{v[0].field}: {v[0].description}", reason="expression_limit",
                                     violations=v, metadata={"limit": ",".join(limits.values())})
    sample_program = types.SimpleNamespace(program_id="sample", name="sample")
    tasks: list[tuple[str, list[dict[str, Any]]]] = []
    index: list[tuple[str, bool]] = []
    for field, source in sources.items():
        contexts = [context_for(sample_program, EventFacts(  # type: ignore[arg-type]
            "sample", fields.get("event_type") or "sample", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), props),
            None, decimal.Decimal(0)) for props in _samples(source, declared)]
        tasks.append((source, contexts))
        index.append((field, True))
        for branch in branches(source):
            tasks.append((branch, contexts))
            index.append((field, False))
    position: tuple[int, int] | None = None
    reason = "invalid_expression"
    done: set[str] = set()
    for (field, whole), result in zip(index, evaluator.check(tasks), strict=True):
        if field in done:
            continue
        if result[0] == "died":
            reason = result[1]
            v.append(errors.FieldViolation(field, _DIED[result[1]].format(
                deadline=evaluator.deadline_ms, memory=evaluator.memory_mb)))
            done.add(field)
            continue
        if result[0] == "compile":
            if whole:
                position = (result[2], result[3]) if result[2] else None
                v.append(_expression_error(field, result[1], position))
                done.add(field)
            continue
        if whole:
            problem = _wrong_type(field, result)
            if problem:
                v.append(errors.FieldViolation(field, problem))
                done.add(field)
    if v:
        metadata = {"position": f"{position[0]}:{position[1]}"} if position and len(v) == 1 else None
        raise errors.InvalidArgument(f"{v[0].field}: {v[0].description}", reason=reason, violations=v,
                                     metadata=metadata)


def _wrong_type(field: str, results: Sequence[Any]) -> str:
    """What is wrong with the sample results of a condition (a boolean) or formula (a number)."""
    for result in results:
        kind = result[0]
        if kind in ("err", "null"):
            continue
        shown = json.dumps(result[1]) if kind == "bool" else result[1]
        if field == "condition" and kind != "bool":
            return f"must give true or false, gives {shown} on a sample event"
        if field == "formula" and kind != "num":
            return f"must give a number, gives {shown} on a sample event"
    return ""


def validate_caps(raw: Mapping[str, str | None] | None, v: list[errors.FieldViolation]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if value is None:
            continue
        if key not in CAP_FIELDS:
            v.append(errors.FieldViolation(f"caps.{key}", "is not a known cap"))
            continue
        try:
            clean[key] = decimal_str(_decimal(value, f"caps.{key}", minimum=decimal.Decimal(0),
                                              exclusive=True))
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
    return clean


def validate_rule(fields: dict[str, Any], declared: Sequence[Mapping[str, Any]] | None,
                  evaluator: sandbox.Sandbox) -> dict[str, Any]:
    """Check every field of a rule (create, update or draft); returns the clean fields."""
    v: list[errors.FieldViolation] = []
    fields = dict(fields)
    fields["name"] = str(fields["name"]).strip()
    if not fields["name"] or len(fields["name"]) > 200:
        v.append(errors.FieldViolation("name", "is required (1 to 200 characters)"))
    text.check_name(v, "name", fields["name"])
    if fields["event_type"]:
        _check_type_name(v, "event_type", fields["event_type"])
    if not str(fields["formula"]).strip():
        v.append(errors.FieldViolation("formula", "is required"))
    if fields["status"] not in STATUSES:
        v.append(errors.FieldViolation("status", "must be ACTIVE or SUSPENDED"))
    if fields["active_from"] and fields["active_to"] and fields["active_from"] >= fields["active_to"]:
        v.append(errors.FieldViolation("active_to", "must be after active_from"))
    if not -1_000_000 <= fields["order"] <= 1_000_000:
        v.append(errors.FieldViolation("order", "must be between -1000000 and 1000000"))
    fields["caps"] = validate_caps(fields.get("caps"), v)
    errors.collect(v)
    check_expressions(fields, declared, evaluator)
    return fields


def adjustment_hash(participant_id: str, amount: decimal.Decimal, reason: str, allow_negative: bool) -> str:
    canonical = json.dumps({"participant_id": participant_id, "amount": decimal_str(amount),
                            "reason": reason, "allow_negative": allow_negative}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _anyone(tenant_id: str, participant_id: str) -> bool:
    return True


class RulesService:
    def __init__(self, db: Database, evaluator: sandbox.Sandbox, on_commit: Callable[[], None] = lambda: None,
                 participant_exists: Callable[[str, str], bool] = _anyone) -> None:
        """``evaluator`` runs rule expressions (simulations and save-time checks);
        ``participant_exists(tenant, participant_id)`` asks identity (adjustments only go to
        participants that exist); ``on_commit`` wakes the outbox relay."""
        self.db = db
        self.sandbox = evaluator
        self._on_commit = on_commit
        self.participant_exists = participant_exists

    # -- programs -----------------------------------------------------------------------
    def _check_program(self, name: str, rounding_mode: str, rounding_precision: int,
                       tiers: Sequence[Mapping[str, str]] | None, on_unknown: str,
                       event_type_policy: str) -> list[dict[str, str]] | None:
        v: list[errors.FieldViolation] = []
        if not name.strip() or len(name) > 200:
            v.append(errors.FieldViolation("name", "is required (1 to 200 characters)"))
        text.check_name(v, "name", name)
        if on_unknown not in POLICIES:
            v.append(errors.FieldViolation("on_unknown_participant", "must be CREATE or REJECT"))
        if rounding_mode not in ROUNDINGS:
            v.append(errors.FieldViolation("rounding_mode", f"must be one of {', '.join(ROUNDINGS)}"))
        if not 0 <= rounding_precision <= 6:
            v.append(errors.FieldViolation("rounding_precision", "must be between 0 and 6"))
        if event_type_policy not in EVENT_TYPE_POLICIES:
            v.append(errors.FieldViolation("event_type_policy", "must be OPEN or REGISTERED"))
        clean = validate_tiers(tiers, v) if tiers is not None else None
        errors.collect(v)
        return clean

    def create_program(self, tenant_id: str, *, name: str, on_unknown: str,
                       tiers: Sequence[dict[str, str]], rounding_mode: str,
                       rounding_precision: int, event_type_policy: str = "OPEN",
                       scheduled_triggers: Mapping[str, Any] | None = None) -> sa.Row[Any]:
        clean_tiers = self._check_program(name, rounding_mode, rounding_precision, tiers, on_unknown,
                                          event_type_policy)
        triggers = _triggers(scheduled_triggers)
        now = utcnow()
        row = {"id": new_id(), "tenant_id": tenant_id, "name": name.strip(),
               "on_unknown_participant": on_unknown, "tiers": clean_tiers,
               "rounding_mode": rounding_mode, "rounding_precision": rounding_precision,
               "event_type_policy": event_type_policy, "scheduled_triggers": triggers,
               "created_at": now, "updated_at": now}
        with self.db.transaction() as session:
            session.execute(storage.programs.insert().values(row))
        return self.get_program(tenant_id, row["id"])

    def update_program(self, tenant_id: str, program_id: str, changes: dict[str, Any]) -> sa.Row[Any]:
        """Change the given fields; tier changes apply to the next evaluation of each
        participant (stored tiers are recomputed on their next ledger change)."""
        current = self.get_program(tenant_id, program_id)
        changes = dict(changes)
        triggers = _triggers(changes.pop("scheduled_triggers")) if "scheduled_triggers" in changes else None
        merged = {"name": current.name, "on_unknown_participant": current.on_unknown_participant,
                  "rounding_mode": current.rounding_mode,
                  "rounding_precision": current.rounding_precision,
                  "event_type_policy": current.event_type_policy, **changes}
        tiers = self._check_program(merged["name"], merged["rounding_mode"], merged["rounding_precision"],
                                    changes.get("tiers"), merged["on_unknown_participant"],
                                    merged["event_type_policy"])
        values = {k: v for k, v in merged.items() if k != "tiers"}
        values["name"] = values["name"].strip()
        if tiers is not None:
            values["tiers"] = tiers
        if triggers is not None:
            values["scheduled_triggers"] = triggers
        p = storage.programs
        with self.db.transaction() as session:
            session.execute(sa.update(p).where(p.c.tenant_id == tenant_id, p.c.id == current.id)
                            .values(**values, updated_at=utcnow()))
            if triggers is not None:
                # A disabled trigger forgets its progress: enabled again, it starts on that
                # day instead of catching up every day it was off.
                w = storage.scheduler_watermarks
                off = [name for name, config in triggers.items() if not config["enabled"]]
                session.execute(sa.delete(w).where(w.c.tenant_id == tenant_id, w.c.program_id == current.id,
                                                   w.c.trigger.in_(off)))
        return self.get_program(tenant_id, current.id)

    def get_program(self, tenant_id: str, program_id: str) -> sa.Row[Any]:
        program_id = parse_uuid(program_id, "program_id")
        p = storage.programs
        with self.db.transaction() as session:
            row = session.execute(sa.select(p).where(p.c.tenant_id == tenant_id,
                                                     p.c.id == program_id)).first()
        if row is None:
            raise errors.NotFound(f"program {program_id} not found", reason="program_not_found")
        return row

    def list_programs(self, tenant_id: str, page_size: int, page_token: str
                      ) -> tuple[list[sa.Row[Any]], str]:
        if not 0 <= page_size <= 200:
            raise errors.InvalidArgument.field("page_size", "must be between 1 and 200")
        size = page_size or 50
        p = storage.programs
        query = sa.select(p).where(p.c.tenant_id == tenant_id)
        if page_token:
            (after,) = PROGRAM_PAGES.decode(page_token)
            query = query.where(p.c.id > after)
        with self.db.transaction() as session:
            rows = list(session.execute(query.order_by(p.c.id).limit(size + 1)).all())
        token = PROGRAM_PAGES.encode(rows[size - 1].id) if len(rows) > size else ""
        return rows[:size], token

    # -- event types ----------------------------------------------------------------------
    def create_event_type(self, tenant_id: str, program_id: str, name: str, description: str,
                          properties: Sequence[Mapping[str, Any]]) -> sa.Row[Any]:
        program = self.get_program(tenant_id, program_id)
        v: list[errors.FieldViolation] = []
        _check_type_name(v, "name", name)
        if len(description) > 2000:
            v.append(errors.FieldViolation("description", "must be at most 2000 characters"))
        text.check_text(v, "description", description)
        seen: set[str] = set()
        clean = []
        for i, prop in enumerate(properties):
            pname = prop["name"]
            before = len(v)
            _check_type_name(v, f"properties[{i}].name", pname)
            if len(v) == before and pname in seen:
                v.append(errors.FieldViolation(f"properties[{i}].name",
                                               f"must be unique ({errors.excerpt(pname)} repeats)"))
            seen.add(pname)
            if prop["type"] not in PROPERTY_TYPES:
                v.append(errors.FieldViolation(f"properties[{i}].type",
                                               f"must be one of {', '.join(PROPERTY_TYPES)}"))
            clean.append({"name": pname, "type": prop["type"], "required": bool(prop["required"])})
        errors.collect(v)
        t = storage.program_event_types
        insert = ledger.insert_for(self.db.dialect)
        with self.db.transaction() as session:
            done = session.execute(insert(t).values(
                tenant_id=tenant_id, program_id=program.id, name=name, description=description,
                properties=clean, created_at=utcnow(),
            ).on_conflict_do_nothing(index_elements=["tenant_id", "program_id", "name"])
                .returning(t.c.name)).first()
        if done is None:
            raise errors.AlreadyExists(f"event type {errors.excerpt(name)} is already registered on the program",
                                       reason="event_type_exists",
                                       violations=[errors.FieldViolation("name", "is already registered")])
        return next(r for r in self.list_event_types(tenant_id, program.id) if r.name == name)

    def list_event_types(self, tenant_id: str, program_id: str) -> list[sa.Row[Any]]:
        program = self.get_program(tenant_id, program_id)
        t = storage.program_event_types
        with self.db.transaction() as session:
            return list(session.execute(sa.select(t).where(
                t.c.tenant_id == tenant_id, t.c.program_id == program.id).order_by(t.c.name)))

    def _declared(self, tenant_id: str, program_id: str, event_type: str,
                  session: Session | None = None) -> list[dict[str, Any]] | None:
        """Properties of the registered event type a rule names (None: not registered)."""
        if not event_type:
            return None
        if session is None:
            with self.db.transaction() as own:
                return self._declared(tenant_id, program_id, event_type, own)
        t = storage.program_event_types
        row = session.execute(sa.select(t.c.properties).where(
            t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.name == event_type)).first()
        return list(row.properties) if row else None

    # -- rules --------------------------------------------------------------------------
    def create_rule(self, tenant_id: str, program_id: str, fields: dict[str, Any]) -> sa.Row[Any]:
        program = self.get_program(tenant_id, program_id)
        fields = validate_rule(fields, self._declared(tenant_id, program.id, fields["event_type"]),
                               self.sandbox)
        now = utcnow()
        rule_id = new_id()
        row = {"id": rule_id, "tenant_id": tenant_id, "program_id": program.id, "version": 1,
               **{k: fields[k] for k in storage.RULE_FIELDS}, "created_at": now, "updated_at": now}
        with self.db.transaction() as session:
            session.execute(storage.rules.insert().values(row))
            session.execute(storage.rule_versions.insert().values(
                rule_id=rule_id, version=1, snapshot=_snapshot(row), created_at=now))
        return self.get_rule(tenant_id, program.id, rule_id)

    def _new_version(self, tenant_id: str, program_id: str, rule_id: str,
                     change: Callable[[dict[str, Any], Session], dict[str, Any] | None]) -> sa.Row[Any]:
        """Lock the rule, let ``change`` give its new fields (None: nothing to do), store them
        as the next version."""
        current = self.get_rule(tenant_id, program_id, rule_id)
        r = storage.rules
        with self.db.transaction() as session:
            query = sa.select(r).where(r.c.tenant_id == tenant_id, r.c.id == current.id)
            if self.db.dialect == "postgresql":
                query = query.with_for_update()
            locked = session.execute(query).one()
            fields = change({k: getattr(locked, k) for k in storage.RULE_FIELDS}, session)
            if fields is None:
                return cast("sa.Row[Any]", locked)
            now = utcnow()
            version = locked.version + 1
            # A saved rule starts its budget count again (the operator fixed it, or means it).
            values = {**{k: fields[k] for k in storage.RULE_FIELDS}, "version": version, "updated_at": now,
                      "budget_breaches": 0}
            session.execute(sa.update(r).where(r.c.id == locked.id).values(values))
            session.execute(storage.rule_versions.insert().values(
                rule_id=locked.id, version=version, snapshot=_snapshot(values), created_at=now))
        return self.get_rule(tenant_id, program_id, rule_id)

    def update_rule(self, tenant_id: str, program_id: str, rule_id: str,
                    changes: dict[str, Any]) -> sa.Row[Any]:
        program = self.get_program(tenant_id, program_id)

        def change(current: dict[str, Any], session: Session) -> dict[str, Any]:
            if current["status"] == "ARCHIVED":
                raise errors.Conflict(f"rule {rule_id} is archived", reason="rule_archived")
            merged = {**current, **changes}
            merged["caps"] = changes.get("caps", current["caps"] or {})
            return validate_rule(merged, self._declared(tenant_id, program.id, merged["event_type"], session),
                                 self.sandbox)

        return self._new_version(tenant_id, program.id, rule_id, change)

    def delete_rule(self, tenant_id: str, program_id: str, rule_id: str) -> sa.Row[Any]:
        """Archive: a new version with status ARCHIVED; deleting again changes nothing."""
        def change(current: dict[str, Any], _: Session) -> dict[str, Any] | None:
            return None if current["status"] == "ARCHIVED" else {**current, "status": "ARCHIVED"}

        return self._new_version(tenant_id, program_id, rule_id, change)

    def get_rule(self, tenant_id: str, program_id: str, rule_id: str) -> sa.Row[Any]:
        program_id = parse_uuid(program_id, "program_id")
        rule_id = parse_uuid(rule_id, "rule_id")
        r = storage.rules
        with self.db.transaction() as session:
            row = session.execute(sa.select(r).where(
                r.c.tenant_id == tenant_id, r.c.program_id == program_id, r.c.id == rule_id)).first()
        if row is None:
            raise errors.NotFound(f"rule {rule_id} not found", reason="rule_not_found")
        return row

    def list_rules(self, tenant_id: str, program_id: str) -> list[sa.Row[Any]]:
        """The program's rules in evaluation order; archived rules are left out."""
        program = self.get_program(tenant_id, program_id)
        r = storage.rules
        with self.db.transaction() as session:
            return list(session.execute(sa.select(r).where(
                r.c.tenant_id == tenant_id, r.c.program_id == program.id, r.c.status != "ARCHIVED",
            ).order_by(r.c.order, r.c.id)).all())

    def rule_versions(self, tenant_id: str, program_id: str, rule_id: str,
                      version: int | None = None) -> list[Any]:
        rule = self.get_rule(tenant_id, program_id, rule_id)
        rv = storage.rule_versions
        query = sa.select(rv).where(rv.c.rule_id == rule.id)
        if version is not None:
            query = query.where(rv.c.version == version)
        with self.db.transaction() as session:
            rows = list(session.execute(query.order_by(rv.c.version)))
        if version is not None and not rows:
            raise errors.NotFound(f"rule {rule.id} has no version {version}", reason="rule_version_not_found")
        out = []
        for row in rows:
            snap = dict(row.snapshot)
            for k in ("active_from", "active_to"):
                snap[k] = dt.datetime.fromisoformat(snap[k]) if snap.get(k) else None
            snap.setdefault("caps", {})
            out.append(types.SimpleNamespace(id=rule.id, program_id=rule.program_id, version=row.version,
                                             created_at=rule.created_at, updated_at=row.created_at, **snap))
        return out

    # -- simulation -----------------------------------------------------------------------
    def simulate(self, tenant_id: str, program_id: str, *, event_type: str, event_data: dict[str, Any],
                 event_timestamp: dt.datetime | None, participant_id: str,
                 attributes: dict[str, Any], drafts: Sequence[dict[str, Any]]
                 ) -> tuple[list[Evaluation], decimal.Decimal, str]:
        """Evaluate a hypothetical event exactly as the worker would, reading (never writing)
        the participant's tier and cap usage."""
        program_row = self.get_program(tenant_id, program_id)
        if participant_id:
            participant_id = parse_uuid(participant_id, "participant_id")
        program = program_policy(program_row)
        registered = {r.name: r.properties for r in self.list_event_types(tenant_id, program.program_id)}
        failure = check_event_type(program_row.event_type_policy, registered, event_type, event_data)
        if failure:
            raise errors.InvalidArgument(failure[1], reason=failure[0],
                                         violations=[errors.FieldViolation(
                                             "event_type" if failure[0] == "event_type_not_registered"
                                             else "event_data", failure[1])])
        if drafts:
            rules = []
            for i, draft in enumerate(drafts):
                try:
                    clean = validate_rule(draft, registered.get(draft["event_type"]), self.sandbox)
                except errors.InvalidArgument as exc:
                    raise errors.InvalidArgument(
                        f"draft_rules[{i}]: {exc.message}", reason=exc.reason,
                        violations=[errors.FieldViolation(f"draft_rules[{i}].{x.field}", x.description)
                                    for x in exc.violations], metadata=exc.metadata) from None
                rules.append(RuleSpec(
                    rule_id=f"draft-{i}", version=0, name=clean["name"], event_type=clean["event_type"],
                    condition=clean["condition"], formula=clean["formula"],
                    apply_tier_multiplier=clean["apply_tier_multiplier"], order=clean["order"],
                    stop_after_match=clean["stop_after_match"], active_from=clean["active_from"],
                    active_to=clean["active_to"], status=clean["status"],
                    caps=Caps.from_json(clean["caps"])))
        else:
            rules = [rule_spec(r) for r in self.list_rules(tenant_id, program.program_id)]
        at = event_timestamp or utcnow()
        with self.db.transaction() as session:
            account = ledger.read_account(session, tenant_id, program.program_id, participant_id) \
                if participant_id else ledger.Account(program.program_id, "", ledger.ZERO, ledger.ZERO, None)
            usage = ledger.cap_usage(session, tenant_id, [r for r in rules if not r.rule_id.startswith("draft-")],
                                     participant_id, at) if participant_id else {}
        facts = EventFacts("simulation", event_type, at, event_data,
                           participant={"id": participant_id or None, "attributes": attributes})
        asked = self.sandbox.answers([Job(program, rules, facts, account.lifetime_earned)])
        if asked.answers[0] is None:
            raise errors.InvalidArgument(
                "a rule's expressions crashed the expression engine on this event",
                reason=sandbox.CRASHED, violations=[errors.FieldViolation(
                    "event_data", "a rule's expressions crashed the expression engine on this event")])
        evaluations = evaluate(program, rules, facts, account.lifetime_earned, usage, asked.answers[0])
        tier = program.tier_for(account.lifetime_earned)
        total = sum((e.points for e in evaluations if e.matched), ledger.ZERO)
        return evaluations, total, tier.name if tier else ""

    # -- ledger -------------------------------------------------------------------------
    def balance(self, tenant_id: str, program_id: str, participant_id: str) -> dict[str, Any]:
        program = self.get_program(tenant_id, program_id)
        participant_id = parse_uuid(participant_id, "participant_id")
        with self.db.transaction() as session:
            account = ledger.read_account(session, tenant_id, program.id, participant_id)
        # The tier follows the program's current tiers, also right after they were changed.
        tier = program_policy(program).tier_for(account.lifetime_earned)
        account.tier = tier.name if tier else None
        return _balance_dict(account)

    def adjust(self, tenant_id: str, program_id: str, participant_id: str, *, amount: str,
               reason: str, idempotency_key: str, allow_negative: bool) -> tuple[sa.Row[Any], dict[str, Any], bool]:
        """Credit or debit points directly: (entry, balance after, deduplicated).

        Idempotent by key within the program, like events: the same key with the same payload
        answers the original entry; with another payload it is 409 idempotency_conflict. A debit
        that would take the available balance below zero is 409 insufficient_points unless
        ``allow_negative``. Positive adjustments count towards lifetime earned (and tiers);
        debits lower only the available balance."""
        program_row = self.get_program(tenant_id, program_id)
        v: list[errors.FieldViolation] = []
        participant = ""
        try:
            participant = parse_uuid(participant_id, "participant_id")
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
        value = ledger.ZERO
        try:
            value = _decimal(amount, "amount")
            if value == 0:
                v.append(errors.FieldViolation("amount", "must not be zero"))
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
        if not reason.strip() or len(reason) > 500:
            v.append(errors.FieldViolation("reason", "is required (1 to 500 characters)"))
        text.check_name(v, "reason", reason)
        if not 1 <= len(idempotency_key) <= 255:
            v.append(errors.FieldViolation("idempotency_key", "is required (1 to 255 characters)"))
        errors.collect(v)
        if not self.participant_exists(tenant_id, participant):
            raise errors.NotFound(f"participant {participant} not found", reason="participant_not_found")
        program = program_policy(program_row)
        source = f"adjustment:{program.program_id}:{idempotency_key}"
        digest = adjustment_hash(participant, value, reason.strip(), allow_negative)
        now = utcnow()
        with self.db.transaction() as session:
            original = self._adjustment(session, tenant_id, source, digest)
            if original is not None:
                account = ledger.read_account(session, tenant_id, program.program_id, participant)
                return original, _balance_dict(account), True
            account = ledger.lock_account(session, self.db.dialect, tenant_id, program.program_id, participant)
            if value < 0 and account.available + value < 0 and not allow_negative:
                raise errors.Conflict(
                    f"amount: debit of {decimal_str(-value)} exceeds the available balance "
                    f"{decimal_str(account.available)}", reason="insufficient_points",
                    violations=[errors.FieldViolation("amount", "exceeds the available balance")])
            entry_id = ledger.post(session, self.db.dialect, tenant_id=tenant_id,
                                   program_id=program.program_id, participant_id=participant,
                                   amount=value, kind="ADJUSTMENT", source=source, reason=reason.strip(),
                                   occurred_at=now, now=now, payload_hash=digest)
            if entry_id is None:  # a concurrent request with the same key committed first
                original = self._adjustment(session, tenant_id, source, digest)
                assert original is not None
                return original, _balance_dict(account), True
            old_tier, new_tier = ledger.settle(session, tenant_id, program, account, value,
                                               value if value > 0 else ledger.ZERO, now)
            notes = [facts.notification(tenant_id, "points.adjusted", f"points.adjusted:{source}", now, {
                "transaction_id": entry_id, "program_id": program.program_id,
                "participant_id": participant, "points": decimal_str(value), "reason": reason.strip(),
                "idempotency_key": idempotency_key, "available": decimal_str(account.available)})]
            if old_tier != new_tier:
                notes.append(ledger.tier_changed(tenant_id, f"tier.changed:{source}", now, account,
                                                 old_tier, new_tier, {"transaction_id": entry_id}))
            self._outbox(session, notes)
            row = session.execute(sa.select(storage.ledger).where(storage.ledger.c.id == entry_id)).one()
            balance = _balance_dict(account)
        self._on_commit()
        return row, balance, False

    @staticmethod
    def _adjustment(session: Session, tenant_id: str, source: str, digest: str) -> sa.Row[Any] | None:
        e = storage.ledger
        row = session.execute(sa.select(e).where(e.c.tenant_id == tenant_id, e.c.source == source)).first()
        if row is not None and row.payload_hash != digest:
            raise errors.Conflict("idempotency_key was already used with a different adjustment",
                                  reason="idempotency_conflict",
                                  violations=[errors.FieldViolation("idempotency_key",
                                                                    "already used with a different payload")])
        return row

    @staticmethod
    def _outbox(session: Session, notes: Sequence[Any]) -> None:
        from accrual.messages.v1 import messages_pb2

        session.execute(storage.outbox.insert(), [outbox_row(
            contract.PUBLISH_NOTIFICATIONS, messages_pb2.Notifications(notifications=notes))])

    def transactions(self, tenant_id: str, program_id: str, participant_id: str,
                     page_size: int, page_token: str) -> tuple[list[sa.Row[Any]], str]:
        program = self.get_program(tenant_id, program_id)
        participant_id = parse_uuid(participant_id, "participant_id")
        if not 0 <= page_size <= 200:
            raise errors.InvalidArgument.field("page_size", "must be between 1 and 200")
        size = page_size or 50
        entry = storage.ledger
        query = sa.select(entry).where(entry.c.tenant_id == tenant_id,
                                       entry.c.program_id == program.id,
                                       entry.c.participant_id == participant_id)
        if page_token:
            at, last_id = TRANSACTION_PAGES.decode(page_token)
            query = query.where(sa.or_(entry.c.created_at < at,
                                       sa.and_(entry.c.created_at == at, entry.c.id < last_id)))
        query = query.order_by(entry.c.created_at.desc(), entry.c.id.desc()).limit(size + 1)
        with self.db.transaction() as session:
            rows = list(session.execute(query).all())
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = TRANSACTION_PAGES.encode(last.created_at, last.id)
        return rows[:size], token


def _triggers(raw: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    clean, problems = normalise_triggers(raw)
    errors.collect([errors.FieldViolation(f, d) for f, d in problems])
    return clean


def _balance_dict(account: ledger.Account) -> dict[str, Any]:
    return {"program_id": account.program_id, "participant_id": account.participant_id,
            "available": account.available, "lifetime_earned": account.lifetime_earned,
            "tier": account.tier or ""}


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v)
            for k, v in row.items() if k in storage.RULE_FIELDS}


PROGRAM_PAGES = pages.Codec("programs", pages.uuid_key)
TRANSACTION_PAGES = pages.Codec("transactions", pages.timestamp, pages.uuid_key)
