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
    # points expire at the end of the month a year after they are earned
    "expiry": {"type": "ROLLING", "period": "P12M", "rounding": "END_OF_MONTH"},
    # a refund's amount is a share of the purchase's event_data.amount
    "monetary_field": "amount",
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


def local_url(host: str, port: int) -> str:
    """The URL that reaches a gateway listening on host:port from this machine."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


#: Polls an event until its rules have run, so the script's next lines see its outcome.
FINISHED = ('finished() { until curl -s -H "X-API-Key: $KEY" "$B/v1/events/$1" '
            "| jq -e '.status == \"COMPLETED\" or .status == \"FAILED\"' >/dev/null; do sleep 0.2; done; }")


def instructions(base: str, key: str, program: dict[str, Any], rules: list[dict[str, Any]]) -> str:
    """A shell script (bash, curl and jq) to paste as a whole: it sends two purchases, waits
    for each, and shows the event, the balance, the ledger and a simulation; then a partial
    refund, and points of an old purchase expiring."""
    pid = program["program_id"]

    def submit(n: int, data: dict[str, Any], at: str = "") -> str:
        body = {"program_id": pid, "idempotency_key": f"order-{run}-{n}", "external_id": "user_abc123",
                "event_type": "purchase", "event_data": data}
        stamp = ""
        if at:  # jq sets the event time from the shell's date, so the script works whenever it runs
            stamp = f' | jq -c --arg at "{at}" \'.event_timestamp = $at\''
        return (f"E{n}=$(echo {shlex.quote(json.dumps(body))}{stamp} | curl -s -X POST -H \"X-API-Key: $KEY\" "
                f"$B/v1/events -d @- | jq -r .event_id); finished $E{n}")

    run = uuid.uuid4().hex[:6]
    refund = {"idempotency_key": f"refund-{run}", "amount": "100", "reason": "returned a speaker"}
    lines = [f"# Demo program {pid} ({program['name']}) with a silver tier at 500 lifetime points (x1.5):"]
    lines += [f"#   rule {r['rule_id']}  {r['name']}: when {r['condition'] or 'always'} -> {r['formula']}"
              for r in rules]
    lines += ["# Paste these lines into a shell (they need curl and jq):",
              f"KEY={shlex.quote(key)}; B={base.rstrip('/')}; PID={pid}", FINISHED,
              "# 1. A $125 purchase: 125 (1 per dollar) + 50 (big-order bonus) = 175 points",
              submit(1, {"amount": 125}),
              "# 2. $200 of electronics: 200 + 50 + 400 = 650 points; lifetime 825 reaches silver",
              submit(2, {"amount": 200, "category": "electronics"}),
              "# 3. The second event with its rule_evaluations",
              'curl -s -H "X-API-Key: $KEY" $B/v1/events/$E2 | jq .',
              "# 4. The participant's balance (825 available) and ledger",
              'PART=$(curl -s -H "X-API-Key: $KEY" $B/v1/events/$E2 | jq -r .participant_id)',
              'curl -s -H "X-API-Key: $KEY" $B/v1/programs/$PID/participants/$PART/balance | jq .',
              'curl -s -H "X-API-Key: $KEY" $B/v1/programs/$PID/participants/$PART/transactions | jq .',
              "# 5. The rules tried without writing anything ($50 gives 50 points)",
              'curl -s -X POST -H "X-API-Key: $KEY" $B/v1/programs/$PID/rules:simulate -d '
              f"{shlex.quote(json.dumps({'event_type': 'purchase', 'event_data': {'amount': 50}}))} | jq .",
              "# 6. A refund of $100 of the $200 order takes back half of each rule's points",
              "#    (100 + 25 + 200 = 325); the balance keeps 500 and the silver tier",
              'curl -s -X POST -H "X-API-Key: $KEY" $B/v1/events/$E2/reversals -d '
              f"{shlex.quote(json.dumps(refund))} | jq '{{points, ratio, transactions: [.transactions[].amount]}}'",
              'curl -s -H "X-API-Key: $KEY" $B/v1/programs/$PID/participants/$PART/balance | jq .',
              "# 7. Expiry: a $30 purchase of 13 months ago earned 45 points (silver) past their expiry;",
              "#    the scheduler's next run (within a minute) expires them with an EXPIRE entry",
              submit(3, {"amount": 30}, at="$(date -u -d '13 months ago' +%Y-%m-%dT%H:%M:%SZ)"),
              'until curl -s -H "X-API-Key: $KEY" "$B/v1/programs/$PID/participants/$PART/lots?status=EXPIRED" '
              "| jq -e '.lots | length > 0' >/dev/null; do sleep 1; done",
              'curl -s -H "X-API-Key: $KEY" "$B/v1/programs/$PID/participants/$PART/lots?status=EXPIRED" | jq .',
              "# 8. The balance after: 500 available (the 45 points expired), and what expires when",
              'curl -s -H "X-API-Key: $KEY" $B/v1/programs/$PID/participants/$PART/balance | jq .']
    return "\n".join(lines)
