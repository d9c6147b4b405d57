"""Schemathesis against a live node: the admin API, driven by its own OpenAPI document
(fetched from ``/v1/openapi.json``), answers generated requests with no server error and
only documented, schema-conformant responses.

Each operation gets a bounded number of positive examples (requests the document allows)
and negative ones (requests it forbids: wrong types, missing fields, bad parameters),
which must be refused with a documented 4xx rather than crash. Two operations are left
out because their effects reach beyond the node: ``AddNode`` would connect to generated
addresses, and ``ApplyLayout`` would hand the node's partitions to generated node ids (the
staging it applies is exercised, through ``AddLayout`` and ``RevertLayout``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from tests.api.conftest import stop
from tests.garage.test_admin_api import AdminNode, start_admin_node

from garage.admin_api import openapi_document

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

#: Operations whose effects leave the node (see the module docstring).
EXCLUDED = {"AddNode", "ApplyLayout"}
_OPERATIONS = [
    op for item in json.loads(openapi_document())["paths"].values() for op in item.values()
]
#: (operation, generation mode): negative examples only where there is an input to break.
CASES = sorted(
    (op["operationId"], mode)
    for op in _OPERATIONS
    if op["operationId"] not in EXCLUDED
    for mode in ("positive", "negative")
    if mode == "positive" or "parameters" in op or "requestBody" in op
)
#: Examples per operation and mode: enough to reach every field and refusal of these
#: small documents, few enough for the whole run to take a few minutes on two cores.
MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminNode]:
    started = start_admin_node(tmp_path_factory.mktemp("schemathesis") / "node")
    try:
        yield started
    finally:
        assert stop(started.s3) == 0


@pytest.fixture(scope="module")
def schema(node: AdminNode) -> Any:
    # The document as the node serves it (``from_url`` would leave out the operation that
    # serves the document itself).
    with node.http(token="") as client:
        served = client.get("/v1/openapi.json")
    assert served.status_code == 200
    return schemathesis.openapi.from_dict(served.json())


@pytest.mark.parametrize(("operation_id", "mode"), CASES)
def test_generated_requests_get_documented_answers(
    node: AdminNode, schema: Any, operation_id: str, mode: str
) -> None:
    (operation,) = [
        op.ok() for op in schema.get_all_operations() if op.ok().definition.raw.get(
            "operationId") == operation_id
    ]  # fmt: skip
    headers = {"Authorization": f"Bearer {node.admin_token}"}
    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=node.admin,
            headers=headers,
            checks=[not_a_server_error, response_schema_conformance],
            timeout=60,
        )

    run()
    with node.http() as client:  # the node is still healthy and serving
        assert client.get("/v1/health").json()["status"] == "healthy"
