"""A stand-in for one rules-worker process: resolves events with its own engine and pool.

Run by test_concurrency as ``python worker_process.py SPEC_JSON``. It prints ``ready``, waits
for ``go`` on stdin (so every process starts at the same moment), resolves each item in its
own call on ``threads`` threads, and prints one JSON line with the outcomes.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from accrual_identity.domain.identities import IdentityType
from accrual_identity.participants import Participants, ResolveItem, ResolveOutcome
from accrual_platform.db import Database


def main() -> None:
    spec = json.loads(sys.argv[1])
    db = Database(spec["url"], "identity", pool_size=spec["threads"])
    participants = Participants(db)
    items = [ResolveItem(program_id=raw["program_id"], participant_id="",
                         identities=[(IdentityType(kind), value) for kind, value in raw["identities"]],
                         create_unknown=True) for raw in spec["items"]]
    participants.region(spec["tenant"])  # warm the cache and the pool before the start
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")

    def one(item: ResolveItem) -> ResolveOutcome:
        return participants.resolve(spec["tenant"], [item])[0]

    with ThreadPoolExecutor(spec["threads"]) as pool:
        outcomes = list(pool.map(one, items))
    db.dispose()
    print(json.dumps([{"participant_id": o.participant_id, "created": o.participant_created,
                       "change": o.enrollment_change.value if o.enrollment_change else None,
                       "error": o.error_code} for o in outcomes]), flush=True)


if __name__ == "__main__":
    main()
