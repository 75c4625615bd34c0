"""Signatures must verify with the reference Standard Webhooks library, as partners use it."""

from __future__ import annotations

import base64
import datetime as dt
import time

import pytest
from accrual_notify.domain import signing
from standardwebhooks import Webhook, WebhookVerificationError

PAYLOAD = '{"id":"msg_1","type":"event.completed","data":{"points":"10"}}'


def test_new_secret_is_standard_webhooks_format() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert secret != signing.new_secret()


def test_headers_verify_with_the_reference_library() -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers([secret], "msg_1", now, PAYLOAD)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(now)
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert Webhook(secret).verify(PAYLOAD, headers)["type"] == "event.completed"


def test_tampering_or_another_secret_fails_verification() -> None:
    secret = signing.new_secret()
    headers = signing.headers([secret], "msg_1", int(time.time()), PAYLOAD)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(PAYLOAD.replace("10", "99"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(PAYLOAD, headers)


def test_rotation_signs_with_both_secrets_until_the_grace_ends() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    now = dt.datetime.now(dt.UTC)
    active = signing.active_secrets(new, old, now + dt.timedelta(hours=1), now)
    assert active == [new, old]
    headers = signing.headers(active, "msg_2", int(now.timestamp()), PAYLOAD)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(PAYLOAD, headers)
    assert signing.active_secrets(new, old, now - dt.timedelta(seconds=1), now) == [new]
    assert signing.active_secrets(new, None, None, now) == [new]


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        signing.signature([], "msg_1", 0, PAYLOAD)
