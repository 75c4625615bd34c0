"""The log redactor: secrets masked by the name they are logged under and by their shape."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from accrual_platform.auth import new_api_key
from accrual_platform.logging import REDACTED, Redactor, configure_logging, is_secret_name

KEY = new_api_key()
WHSEC = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
TOKEN = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5"


def redact(**event: object) -> dict[str, object]:
    out: dict[str, object] = Redactor([TOKEN])(None, "info", event)
    return out


@pytest.mark.parametrize("name", [
    "x-api-key", "X-API-Key", "authorization", "Authorization", "proxy-authorization",
    "api_key", "apikey", "token", "x-internal-token", "internal_token", "access_token",
    "secret", "webhook_secret", "previous_secret", "secrets", "password", "db_password",
    "cookie", "set-cookie", "credentials",
])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)
    assert redact(**{name: "anything at all"}) == {name: REDACTED}


@pytest.mark.parametrize("name", [
    "event", "idempotency_key", "key_id", "page_token", "next_page_token", "tenant_id",
    "secret_expires_at", "tokens_used", "request_id", "event_type",
])
def test_ordinary_names_are_kept(name: str) -> None:
    assert not is_secret_name(name)
    assert redact(**{name: "plain value"}) == {name: "plain value"}


def test_values_are_masked_by_shape_anywhere_in_a_string() -> None:
    out = redact(event=f"lookup of {KEY} failed", detail=f"signing with {WHSEC}!",
                 header=f"Bearer {KEY}", basic="basic dXNlcjpwYXNz", note=f"token={TOKEN};")
    assert out == {"event": f"lookup of {REDACTED} failed", "detail": f"signing with {REDACTED}!",
                   "header": f"Bearer {REDACTED}", "basic": f"basic {REDACTED}",
                   "note": f"token={REDACTED};"}


def test_nested_headers_metadata_and_objects_are_masked() -> None:
    out = redact(headers={"X-API-Key": KEY, "Accept": "application/json"},
                 metadata=[("x-api-key", KEY), ("x-request-id", "req_1")],
                 raw=[(b"authorization", b"Bearer " + KEY.encode())],
                 error=ValueError(f"bad key {KEY}"), count=3, ok=True, missing=None)
    assert out["headers"] == {"X-API-Key": REDACTED, "Accept": "application/json"}
    assert out["metadata"] == [("x-api-key", REDACTED), ("x-request-id", "req_1")]
    assert KEY not in str(out["raw"]) and KEY not in str(out["error"])
    assert "bad key" in str(out["error"])
    assert (out["count"], out["ok"], out["missing"]) == (3, True, None)


def test_text_without_secrets_is_unchanged() -> None:
    event = {"event": "event accepted", "event_id": "01a2", "rule": "sk-8 bonus", "n": 1.5,
             "metric": "disk_usage_percentage_of_the_volume", "short": "sk_demo"}
    assert redact(**event) == event


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_configured_logging_redacts_and_renders_no_locals(fmt: str) -> None:
    configure_logging("test", fmt=fmt, level="INFO", secrets=[TOKEN])
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    log = structlog.get_logger("test")

    def fail(api_key_value: str) -> None:
        hidden_local = "local-" + api_key_value[3:]  # noqa: F841 (only a traceback would show it)
        raise RuntimeError("boom")

    try:
        fail(KEY)
    except RuntimeError:
        log.exception("request_failed", x_api_key=KEY)
    try:
        fail(KEY)
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("foreign failure with %s", KEY)
    logging.getLogger("grpc").warning("metadata %s", [("x-internal-token", TOKEN)])
    text = stream.getvalue()
    assert "request_failed" in text and "foreign failure" in text and "RuntimeError: boom" in text
    assert KEY not in text and KEY[3:] not in text and TOKEN not in text
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert lines[0]["x_api_key"] == REDACTED and "Traceback" in lines[0]["exception"]
