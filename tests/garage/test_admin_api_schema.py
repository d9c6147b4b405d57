"""Schemathesis against a live node: the admin API, driven by its own OpenAPI document
(fetched from ``/v1/openapi.json``), answers generated requests with no server error and
only documented, schema-conformant responses, accepts what the document allows, and
refuses what it forbids.

Each operation gets a bounded number of positive examples (requests the document allows)
and negative ones (requests it forbids: wrong types, missing fields, bad parameters). On
top of schemathesis' response checks:

- ``positive_data_acceptance``: a request the document allows is never refused as bad
  (400): it succeeds, or names a missing bucket or key (404) or a taken name (409). Not
  for ``/check``, whose "no" is a 400 (Garage's contract with reverse proxies);
- ``negative_data_rejection``: a request the document forbids is refused with a 4xx
  (schemathesis itself forgives unknown query parameters, which Garage ignores).

Generated ids name nothing, so alone they would only ever reach 404s. About half of the
examples get the ids of seeded objects instead (:func:`plant`): a key holding a local alias
of a bucket that has two global aliases, made through the API (the seeds of the operations
that use them up, deletions and alias removals, are made afresh for each example). The
token is put in the case too. Schemathesis re-checks a changed case against the document,
so a planted case is judged as what it has become. The rules of the document that OpenAPI
3.0 cannot state are applied to every case: ``id`` goes without ``search`` (GetKeyInfo) or
``globalAlias`` (GetBucketInfo), a ``search`` is a key id (prefix) that matches exactly one
key, and ``showSecretKey`` comes with ``id`` or ``search`` (a list ignores it).

``AddNode`` and ``ApplyLayout`` run in negative mode only: a positive ``AddNode`` would
connect to generated addresses, a positive ``ApplyLayout`` would hand the node's partitions
to generated node ids. For ``ApplyLayout`` a harmless change is staged first, so that an
invalid request wrongly accepted would be seen applying it (the positive side of both is
checked without a node in ``test_admin_api_core``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
)
from tests.api.conftest import stop
from tests.garage.test_admin_api import (
    AdminNode,
    Victims,
    make_victims,
    staged_if_needed,
    start_admin_node,
)

from garage.admin_api import openapi_document

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

#: Operations whose positive requests would reach beyond the node (see the docstring).
NEGATIVE_ONLY = {"AddNode", "ApplyLayout"}
#: /check answers a question, yes (200) or no (400, Garage's contract with reverse proxies):
#: a valid request may get a 400, so it is not held to positive_data_acceptance.
YES_OR_NO = {"CheckDomain"}
#: Operations that use their seeds up: seeded afresh for each example.
CONSUMING = {"DeleteBucket", "DeleteKey", "DeleteBucketGlobalAlias", "DeleteBucketLocalAlias"}
#: Operations whose ``id`` is an access key id (elsewhere: a bucket id).
KEY_IDS = {"ListKeysOrGetKeyInfo", "CreateOrUpdateKey", "DeleteKey"}


def _has_input(op: dict[str, Any]) -> bool:
    """Whether a negative example can break something (RevertLayout's body is free)."""
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    return "parameters" in op or bool(body.get("schema"))


_OPERATIONS = [
    op for item in json.loads(openapi_document())["paths"].values() for op in item.values()
]
#: (operation, generation mode).
CASES = sorted(
    (op["operationId"], mode)
    for op in _OPERATIONS
    for mode in ("positive", "negative")
    if (mode == "positive" and op["operationId"] not in NEGATIVE_ONLY)
    or (mode == "negative" and _has_input(op))
)
#: Examples per operation and mode: enough to reach every field and refusal of these
#: small documents, few enough for the whole run to take a minute or two on two cores.
MAX_EXAMPLES = 20
#: What a request the document allows may get: success, or a missing or taken name. A
#: 401/403 would be a token bug, a 5xx is caught by not_a_server_error.
ACCEPTED = ["2xx", "404", "409"]


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
    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}}
    )
    return schemathesis.openapi.from_dict(served.json(), config=config)


def _apply_document_rules(query: dict[str, Any], v: Victims, *, seeded: bool) -> None:
    """The rules OpenAPI 3.0 cannot state (see the module docstring), in place."""
    if "id" in query:
        query.pop("search", None)
        query.pop("globalAlias", None)
    if "search" in query:
        query["search"] = v.key_id if seeded else v.key_id[:16]
    if "id" not in query and "search" not in query:
        query.pop("showSecretKey", None)  # read only with one of them


def plant(case: Any, operation_id: str, v: Victims, *, seeded: bool) -> None:
    """Applies the document's unstated rules to ``case`` and, when ``seeded``, puts the
    ids and aliases of ``v`` in place of the generated ones it has."""
    if isinstance(case.query, dict):
        query = dict(case.query)
        _apply_document_rules(query, v, seeded=seeded)
        if seeded:
            if "id" in query:
                query["id"] = v.key_id if operation_id in KEY_IDS else v.bucket_id
            if "globalAlias" in query:
                query["globalAlias"] = v.global_aliases[0]
            if "accessKeyId" in query:
                query["accessKeyId"] = v.key_id
            if "alias" in query and operation_id == "DeleteBucketGlobalAlias":
                query["alias"] = v.global_aliases[1]
            if "alias" in query and operation_id == "DeleteBucketLocalAlias":
                query["alias"] = v.local_alias
        if query != case.query:
            case.query = query
    if seeded and isinstance(case.body, dict):
        body = dict(case.body)
        if "bucketId" in body:
            body["bucketId"] = v.bucket_id
        if "accessKeyId" in body and operation_id in ("AllowBucketKey", "DenyBucketKey"):
            body["accessKeyId"] = v.key_id
        local = body.get("localAlias")
        if isinstance(local, dict) and "accessKeyId" in local:
            body["localAlias"] = {**local, "accessKeyId": v.key_id}
        if body != case.body:
            case.body = body


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
    seeds = make_victims(node)
    checks = [not_a_server_error, response_schema_conformance, negative_data_rejection]
    if operation_id not in YES_OR_NO:
        checks.append(positive_data_acceptance)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, seeded=st.sampled_from([True, False]))
    def run(case: Any, seeded: bool) -> None:
        v = make_victims(node) if seeded and operation_id in CONSUMING else seeds
        plant(case, operation_id, v, seeded=seeded)
        # The token goes into the case, so that schemathesis judges it as sent.
        case.headers = {**(case.headers or {}), **headers}
        if operation_id in NEGATIVE_ONLY:
            # A case whose only fault was the missing token is valid once it has one.
            assume(case.meta.generation.mode.is_negative)
        case.call_and_validate(base_url=node.admin, checks=checks, timeout=60)

    with staged_if_needed(node, operation_id):
        run()
    with node.http() as client:  # the node is still healthy and serving
        assert client.get("/v1/health").json()["status"] == "healthy"
