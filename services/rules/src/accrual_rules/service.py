"""Programs, rules, balances and ledger history (the synchronous API)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from accrual_platform import errors
from accrual_platform.db import Database, utcnow

from accrual_rules import storage
from accrual_rules.domain.evaluation import ROUNDINGS
from accrual_rules.domain.expressions import ExpressionError, compile_expression

POLICIES = ("CREATE", "REJECT")
STATUSES = ("ACTIVE", "SUSPENDED")


def parse_uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError):
        raise errors.InvalidArgument.field(field, "must be a UUID") from None


def _decimal(value: str, field: str, *, minimum: decimal.Decimal | None = None) -> decimal.Decimal:
    try:
        d = decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise errors.InvalidArgument.field(field, "must be a decimal number") from None
    if not d.is_finite() or (minimum is not None and d < minimum):
        raise errors.InvalidArgument.field(field, f"must be a finite number >= {minimum}")
    return d


def check_expression(source: str, field: str) -> None:
    try:
        compile_expression(source)
    except ExpressionError as exc:
        where = f" at line/column {exc.position}" if exc.position else ""
        raise errors.InvalidArgument(
            f"{field}: {exc.message}", reason="invalid_expression",
            violations=[errors.FieldViolation(field, f"{exc.message}{where}")],
            metadata={"position": f"{exc.position[0]}:{exc.position[1]}"} if exc.position else None,
        ) from None


class RulesService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- programs -----------------------------------------------------------------------
    def create_program(self, tenant_id: str, *, name: str, on_unknown: str,
                       tiers: Sequence[dict[str, str]], rounding_mode: str,
                       rounding_precision: int) -> sa.Row[Any]:
        v: list[errors.FieldViolation] = []
        if not name.strip() or len(name) > 200:
            v.append(errors.FieldViolation("name", "is required (1 to 200 characters)"))
        if rounding_mode not in ROUNDINGS:
            v.append(errors.FieldViolation("rounding_mode", f"must be one of {', '.join(ROUNDINGS)}"))
        if not 0 <= rounding_precision <= 6:
            v.append(errors.FieldViolation("rounding_precision", "must be between 0 and 6"))
        clean_tiers = []
        names = set()
        for i, t in enumerate(tiers):
            if not t["name"].strip():
                v.append(errors.FieldViolation(f"tiers[{i}].name", "is required"))
            elif t["name"] in names:
                v.append(errors.FieldViolation(f"tiers[{i}].name", "must be unique"))
            names.add(t["name"])
            try:
                minimum = _decimal(t["min_lifetime_points"] or "0", f"tiers[{i}].min_lifetime_points",
                                   minimum=decimal.Decimal(0))
                mult = _decimal(t["multiplier"] or "1", f"tiers[{i}].multiplier",
                                minimum=decimal.Decimal(0))
                clean_tiers.append({"name": t["name"], "min_lifetime_points": str(minimum),
                                    "multiplier": str(mult)})
            except errors.InvalidArgument as exc:
                v.extend(exc.violations)
        errors.collect(v)
        now = utcnow()
        row = {"id": str(uuid.uuid4()), "tenant_id": tenant_id, "name": name.strip(),
               "on_unknown_participant": on_unknown, "tiers": clean_tiers,
               "rounding_mode": rounding_mode, "rounding_precision": rounding_precision,
               "created_at": now, "updated_at": now}
        with self.db.transaction() as session:
            session.execute(storage.programs.insert().values(row))
        return self.get_program(tenant_id, row["id"])

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
            after = _decode_token(page_token)
            query = query.where(p.c.id > after)
        with self.db.transaction() as session:
            rows = list(session.execute(query.order_by(p.c.id).limit(size + 1)).all())
        token = _encode_token(rows[size - 1].id) if len(rows) > size else ""
        return rows[:size], token

    # -- rules --------------------------------------------------------------------------
    def create_rule(self, tenant_id: str, program_id: str, fields: dict[str, Any]) -> sa.Row[Any]:
        program = self.get_program(tenant_id, program_id)
        v: list[errors.FieldViolation] = []
        if not str(fields["name"]).strip() or len(fields["name"]) > 200:
            v.append(errors.FieldViolation("name", "is required (1 to 200 characters)"))
        if not str(fields["formula"]).strip():
            v.append(errors.FieldViolation("formula", "is required"))
        if fields["status"] not in STATUSES:
            v.append(errors.FieldViolation("status", "must be ACTIVE or SUSPENDED"))
        if fields["active_from"] and fields["active_to"] and fields["active_from"] >= fields["active_to"]:
            v.append(errors.FieldViolation("active_to", "must be after active_from"))
        errors.collect(v)
        if fields["condition"].strip():
            check_expression(fields["condition"], "condition")
        check_expression(fields["formula"], "formula")
        now = utcnow()
        rule_id = str(uuid.uuid4())
        row = {"id": rule_id, "tenant_id": tenant_id, "program_id": program.id, "version": 1,
               **{k: fields[k] for k in storage.RULE_FIELDS}, "created_at": now, "updated_at": now}
        with self.db.transaction() as session:
            session.execute(storage.rules.insert().values(row))
            session.execute(storage.rule_versions.insert().values(
                rule_id=rule_id, version=1, snapshot=_snapshot(row), created_at=now))
        return self.get_rule(tenant_id, program.id, rule_id)

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
        program = self.get_program(tenant_id, program_id)
        r = storage.rules
        with self.db.transaction() as session:
            return list(session.execute(sa.select(r).where(
                r.c.tenant_id == tenant_id, r.c.program_id == program.id
            ).order_by(r.c.order, r.c.id)).all())

    # -- ledger -------------------------------------------------------------------------
    def balance(self, tenant_id: str, program_id: str, participant_id: str) -> dict[str, Any]:
        program = self.get_program(tenant_id, program_id)
        participant_id = parse_uuid(participant_id, "participant_id")
        b = storage.balances
        with self.db.transaction() as session:
            row = session.execute(sa.select(b).where(
                b.c.tenant_id == tenant_id, b.c.program_id == program.id,
                b.c.participant_id == participant_id)).first()
        zero = decimal.Decimal(0)
        return {"program_id": program.id, "participant_id": participant_id,
                "available": row.available if row else zero,
                "lifetime_earned": row.lifetime_earned if row else zero,
                "tier": (row.tier or "") if row else ""}

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
            at_raw, _, last_id = _decode_token(page_token).partition("|")
            try:
                at = dt.datetime.fromisoformat(at_raw)
            except ValueError:
                raise errors.InvalidArgument.field("page_token", "is not a token from a previous page") from None
            query = query.where(sa.or_(entry.c.created_at < at,
                                       sa.and_(entry.c.created_at == at, entry.c.id < last_id)))
        query = query.order_by(entry.c.created_at.desc(), entry.c.id.desc()).limit(size + 1)
        with self.db.transaction() as session:
            rows = list(session.execute(query).all())
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = _encode_token(f"{last.created_at.isoformat()}|{last.id}")
        return rows[:size], token


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v)
            for k, v in row.items() if k in storage.RULE_FIELDS}


def _encode_token(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidArgument.field("page_token", "is not a token from a previous page") from None
