"""schemathesis against the router's own OpenAPI schema, override routes on.

Every generated request, valid or not, gets a documented status (never a 5xx)
and a body that matches the schema of that status.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case

from admission import AdaptiveLimiter, WorkloadClass
from admission.policy import parse_config
from admission.registry import Registry
from integrations.web_api import DEFAULT_PREFIX, throughput_router

TOKEN = "schema-token"
QUEUES = ["files-new_file", "files-document_conversion_input", "titus-titus_input"]


def _app() -> FastAPI:
    registry = Registry(parse_config({"queues": [{"name": q} for q in QUEUES]}))
    registry.add_limiter(
        AdaptiveLimiter(
            "file_enrichment",
            rate=10,
            burst=10,
            classes=[WorkloadClass("standard"), WorkloadClass("expensive")],
        )
    )
    registry.add_override("queue", QUEUES[0], level="warning", ttl_seconds=3600)
    app = FastAPI()
    app.include_router(throughput_router(registry, api_token=TOKEN), prefix=DEFAULT_PREFIX)
    return app


# A schema says which requests are well formed, not which names exist: a
# well-formed what-if or override naming an unknown preset, queue or class is
# refused with a 422 that names it, like the 404 of an unknown path name.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 401, 403, 404, 422]}}}
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(), config=CONFIG)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented_and_never_a_server_error(case: Case[Any]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_without_a_token_every_answer_is_documented_too(case: Case[Any]) -> None:
    case.call_and_validate()
