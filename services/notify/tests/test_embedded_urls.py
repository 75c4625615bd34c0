"""Which webhook URLs the embedded suite accepts: private and http ones for the local demo,
unless WEBHOOK_ALLOW_PRIVATE / WEBHOOK_ALLOW_HTTP say 0."""

from __future__ import annotations

import pathlib
from typing import Any, cast

import pytest
from accrual_notify.endpoints import Endpoints
from accrual_notify.storage import NotifyStore
from accrual_platform import errors
from accrual_platform.settings import Settings


class Store:
    """Only what creating an endpoint writes, which is all these checks reach."""

    def insert_endpoint(self, **row: Any) -> dict[str, Any]:
        return row


def endpoints(tmp_path: pathlib.Path, **env: str) -> Endpoints:
    settings = Settings.from_env(embedded=True, env={"ACCRUAL_VAR_DIR": str(tmp_path / "var"), **env})
    return Endpoints(cast(NotifyStore, Store()), settings, resolve=lambda host, port: ["127.0.0.1"])


def refused(service: Endpoints, url: str) -> list[str]:
    with pytest.raises(errors.InvalidArgument) as info:
        service.create("tenant", url, ["*"], "")
    return [v.field for v in info.value.violations]


def test_the_embedded_demo_delivers_to_local_http_receivers(tmp_path: pathlib.Path) -> None:
    service = endpoints(tmp_path)
    service.create("tenant", "http://127.0.0.1:9000/hook", ["*"], "")
    service.create("tenant", "https://localhost/hook", ["*"], "")


def test_allow_private_0_refuses_a_private_address_in_embedded_mode(tmp_path: pathlib.Path) -> None:
    service = endpoints(tmp_path, WEBHOOK_ALLOW_PRIVATE="0")
    assert refused(service, "https://127.0.0.1/hook") == ["url"]
    assert refused(service, "https://10.1.2.3/hook") == ["url"]
    assert refused(service, "http://localhost/hook") == ["url"]


def test_http_and_private_addresses_are_allowed_separately(tmp_path: pathlib.Path) -> None:
    no_http = endpoints(tmp_path, WEBHOOK_ALLOW_HTTP="0")
    no_http.create("tenant", "https://127.0.0.1/hook", ["*"], "")
    assert refused(no_http, "http://127.0.0.1/hook") == ["url"]
    http_only = endpoints(tmp_path, WEBHOOK_ALLOW_PRIVATE="0", WEBHOOK_ALLOW_HTTP="1")
    http_only.create("tenant", "http://93.184.216.34/hook", ["*"], "")
    assert refused(http_only, "http://127.0.0.1/hook") == ["url"]
