"""A Python client generated from the served /openapi.json runs the README walkthrough.

``openapi-python-client`` (a dev dependency) generates the client into a temporary folder;
the README's quick start (program, rule, event, its outcome, the balance) then goes through
its typed models and methods only, so a document change that breaks generated clients
fails here.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import subprocess
import sys
import time
import uuid
from types import ModuleType
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
BIN = pathlib.Path(sys.executable).parent


@pytest.fixture(scope="module")
def client_package(document: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Generate the client as package ``accrual_client`` on sys.path; returns its name."""
    root = tmp_path_factory.mktemp("client")
    spec = root / "openapi.json"
    spec.write_text(json.dumps(document))
    run = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", str(spec), "--meta", "none",
         "--output-path", str(root / "accrual_client")],
        cwd=root, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    return "accrual_client"


def _mod(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def test_readme_walkthrough_through_the_generated_client(suite: tuple[str, str], client_package: str) -> None:
    base, key = suite
    models = _mod(client_package, "models")
    ingest = "api.ingest_service"
    rules = "api.rules_service"
    client = _mod(client_package, "client").AuthenticatedClient(
        base_url=base, token=key, raise_on_unexpected_status=True)

    program = _mod(client_package, f"{rules}.create_program").sync(
        client=client, body=models.CreateProgramRequest(name="Demo"))
    assert isinstance(program, models.Program), program
    rule = _mod(client_package, f"{rules}.create_rule").sync(
        program.program_id, client=client, body=models.CreateRuleRequestBody(
            name="1 point per dollar", event_type="purchase", formula="properties.amount * 1"))
    assert isinstance(rule, models.Rule), rule

    body = models.SubmitEventRequest(
        program_id=program.program_id, idempotency_key=f"order-{uuid.uuid4()}", external_id="user_abc123",
        event_type="purchase",
        event_data=models.SubmitEventRequestEventDataType0.from_dict({"amount": 125}))
    submit: Any = _mod(client_package, f"{ingest}.submit_event")
    event = submit.sync(client=client, body=body)
    assert isinstance(event, models.Event), event
    assert event.status == models.EventStatus.PENDING and event.deduplicated is False

    get_event: Any = _mod(client_package, f"{ingest}.get_event")
    deadline = time.time() + 30
    while event.status != models.EventStatus.COMPLETED and time.time() < deadline:
        time.sleep(0.2)
        event = get_event.sync(event.event_id, client=client)
    assert event.status == models.EventStatus.COMPLETED, event
    assert event.rule_evaluations[0].matched is True

    balance = _mod(client_package, f"{rules}.get_balance").sync(
        program.program_id, event.participant_id, client=client)
    assert isinstance(balance, models.Balance), balance
    assert balance.available == 125 and balance.lifetime_earned == 125

    again = submit.sync(client=client, body=body)
    assert again.event_id == event.event_id and again.deduplicated is True
    conflict = submit.sync(client=client, body=models.SubmitEventRequest.from_dict(
        {**body.to_dict(), "event_data": {"amount": 1}}))
    assert isinstance(conflict, models.Error) and conflict.error.code == "idempotency_conflict"
