"""Schemathesis against the REST API's OpenAPI schema, in process (WSGI, no server).

Every operation of ``/api/v1/schema`` is fuzzed with a write-scope token of ``owner``,
whose namespace holds ``owner/lora`` (path parameters ``namespace``/``name`` are pinned
to it, so version, alias, file and upload operations reach real rows; everything else
is generated). Checks: no 5xx, responses match their documented schema and content
type, and every 4xx carries the API's error shape ``{"error": {"code", "message"}}``.
Not checked: status codes the schema does not list (it documents successes only; an
error answer's shape is checked by ``error_shape`` instead), and whether schema-valid
requests succeed or schema-invalid ones fail: against real state, valid-looking requests
meet 404/409 (no such job, alias exists), and DRF accepts lenient forms (``limit=null``
ignored, ``auto_merge=0`` in a form) that the schema's types do not spell out.

Budget: ``max-examples`` per operation and derandomized generation, so the run is the
same on every machine and fits the fuzz suite's time budget.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from hub.wsgi import application
from tests.fuzz.conftest import Owned

MAX_EXAMPLES = 4

CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        "parameters": {"namespace": "owner", "name": "lora"},
    }
)
schema = schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", application, config=CONFIG)


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx from the REST API is ``{"error": {"code": str, "message": str}}``."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} answered as {content_type!r}, not the API's JSON error"
    )
    body = json.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{response.status_code} without an error object: {body!r}"
    assert isinstance(error.get("code"), str), body
    assert error["code"], body
    assert isinstance(error.get("message"), str), body
    return True


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@pytest.mark.timeout(60)
def test_rest_api(case: Any, owned: Owned) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {owned.token}"},
        excluded_checks=[
            status_code_conformance,
            positive_data_acceptance,
            negative_data_rejection,
        ],
        additional_checks=[not_a_server_error, error_shape],
    )
