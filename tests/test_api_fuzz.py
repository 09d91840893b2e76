"""A bounded schemathesis pass over the OpenAPI document (CI's budget).

Every schemathesis check runs: no 5xx, status codes, content types, headers and
bodies as documented, requests the document allows are accepted and requests it
forbids are rejected. ``FUZZ_EXAMPLES`` raises the budget for a longer run.

It runs against the session's Redis: a generated purge-by-filter may delete finished
records of earlier test modules, which no later test reads. It cannot start a run:
schemathesis does not know the orchestrators' names (404).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from api import create_app
from proj import app as celery_app

pytestmark = pytest.mark.timeout(600)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
CONTINUATION = "x-ms-continuation-token"

schema = schemathesis.openapi.from_wsgi(
    "/api/openapi.json", create_app({"API_AUTH": "anonymous"}, celery_app=celery_app)
)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_keeps_to_its_openapi_document(case):
    excluded = []
    if CONTINUATION in {name.lower() for name in case.headers or {}}:
        # Any string fits the header's schema, but only tokens we issued are accepted:
        # a made-up one is a documented 400 (invalid_continuation_token).
        excluded.append(checks.positive_data_acceptance)
    case.call_and_validate(excluded_checks=excluded)
