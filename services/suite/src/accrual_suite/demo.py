"""``accrual demo``: create the seed-001 demo program through the public REST API of a
running suite and print what to send to see its rules work."""

from __future__ import annotations

import json
import pathlib
import shlex
import urllib.error
import urllib.request
import uuid
from typing import Any

PROGRAM: dict[str, Any] = {
    "name": "Demo store",
    "on_unknown_participant": "CREATE",
    "tiers": [{"name": "silver", "min_lifetime_points": "500", "multiplier": "1.5"}],
    "rounding_mode": "FLOOR",
}
RULES: list[dict[str, Any]] = [
    {"name": "1 point per dollar", "event_type": "purchase", "condition": "properties.amount > 0",
     "formula": "properties.amount * 1", "apply_tier_multiplier": True, "order": 10},
    {"name": "Big-order bonus", "event_type": "purchase", "condition": "properties.amount > 100",
     "formula": "50", "order": 20},
    {"name": "2x on electronics", "event_type": "purchase",
     "condition": 'properties.category == "electronics"', "formula": "properties.amount * 2",
     "apply_tier_multiplier": True, "order": 30},
]


class DemoError(Exception):
    pass


def _call(base: str, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{base}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"X-API-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise DemoError(f"{method} {path} answered {exc.code}: {exc.read().decode(errors='replace')}") from None
    except urllib.error.URLError as exc:
        raise DemoError(f"cannot reach {base} ({exc.reason}); is the suite running (make run)?") from None


def default_key(var_dir: pathlib.Path) -> str:
    path = var_dir / "admin_key"
    if not path.exists():
        raise DemoError(f"no --api-key given and {path} does not exist; start the suite with `make run` "
                        "or pass --api-key")
    return path.read_text().strip()


def create_demo(base: str, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    base = base.rstrip("/")
    program = _call(base, key, "POST", "/v1/programs", PROGRAM)
    rules = [_call(base, key, "POST", f"/v1/programs/{program['program_id']}/rules", rule) for rule in RULES]
    return program, rules


def instructions(base: str, key: str, program: dict[str, Any], rules: list[dict[str, Any]]) -> str:
    base = base.rstrip("/")
    pid = program["program_id"]
    auth = f"-H {shlex.quote('X-API-Key: ' + key)}"

    def post(path: str, body: dict[str, Any]) -> str:
        return (f"curl -s -X POST {auth} -H 'Content-Type: application/json' {base}{path} "
                f"-d {shlex.quote(json.dumps(body))}")

    run = uuid.uuid4().hex[:6]
    lines = [f"Demo program {pid} ({program['name']}) with a silver tier at 500 lifetime points (x1.5):"]
    lines += [f"  rule {r['rule_id']}  {r['name']}: when {r['condition'] or 'always'} -> {r['formula']}"
              for r in rules]
    lines += ["", "1. A $125 purchase: 125 (1 per dollar) + 50 (big-order bonus) = 175 points",
              "   " + post("/v1/events", {"program_id": pid, "idempotency_key": f"order-{run}-1",
                                          "external_id": "user_abc123", "event_type": "purchase",
                                          "event_data": {"amount": 125}}),
              "", "2. $200 of electronics: 200 + 50 + 400 = 650 points; lifetime 825 reaches silver",
              "   " + post("/v1/events", {"program_id": pid, "idempotency_key": f"order-{run}-2",
                                          "external_id": "user_abc123", "event_type": "purchase",
                                          "event_data": {"amount": 200, "category": "electronics"}}),
              "", "3. The event with its rule_evaluations (use the event_id from the answer):",
              f"   curl -s {auth} {base}/v1/events/EVENT_ID",
              "", "4. Balance and ledger (participant_id from the event):",
              f"   curl -s {auth} {base}/v1/programs/{pid}/participants/PARTICIPANT_ID/balance",
              f"   curl -s {auth} {base}/v1/programs/{pid}/participants/PARTICIPANT_ID/transactions",
              "", "5. Try the rules without writing anything ($50 gives 50 points):",
              "   " + post(f"/v1/programs/{pid}/rules:simulate", {"event_type": "purchase",
                                                                  "event_data": {"amount": 50}})]
    return "\n".join(lines)
