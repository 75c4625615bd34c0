"""Standard Webhooks secrets and signatures.

Signing goes through the reference ``standardwebhooks`` package so what we send is exactly
what partners' verifiers (the same library in many languages) accept. During a secret
rotation a message carries one ``v1,`` signature per active secret, space-separated, so the
partner can switch its verifier to the new secret at any moment inside the grace period.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Sequence

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def active_secrets(current: str, previous: str | None, previous_expires_at: dt.datetime | None,
                   now: dt.datetime) -> list[str]:
    """Secrets to sign with: the current one, plus the previous one until its grace ends."""
    if previous and previous_expires_at is not None and now < previous_expires_at:
        return [current, previous]
    return [current]


def signature(secrets_: Sequence[str], msg_id: str, timestamp: int, payload: str) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64>`` per secret, space-separated."""
    if not secrets_:
        raise ValueError("at least one secret is required")
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return " ".join(Webhook(s).sign(msg_id, when, payload) for s in secrets_)


def headers(secrets_: Sequence[str], msg_id: str, timestamp: int, payload: str) -> dict[str, str]:
    """Every header a Standard Webhooks receiver needs to verify and deduplicate."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secrets_, msg_id, timestamp, payload),
        "content-type": "application/json",
    }
