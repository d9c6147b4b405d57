"""The pure parts of the admin API: routing, tokens, the JSON codec, error mapping, and the
OpenAPI document itself (valid, and describing exactly the routes the router has).

Property tests feed arbitrary requests and JSON bodies to the router and the request
parsers: each either succeeds or refuses with a 4xx :class:`AdminApiError`, never anything
else; and whatever the response builders are given, their output matches the document.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi
from tests.garage.test_admin_api import COMPONENTS, DOC, _json_schema

from garage.admin_api import (
    AdminApiError,
    Authorization,
    Endpoint,
    check_authorization,
    openapi_document,
    route,
)
from garage.admin_api._codec import (
    MIN_CAPACITY,
    bucket_info_json,
    key_info_json,
    layout_json,
    parse_bucket_creation,
    parse_bucket_update,
    parse_connect,
    parse_json,
    parse_key_creation,
    parse_key_import,
    parse_key_update,
    parse_layout_version,
    parse_permission_change,
    parse_role_changes,
)
from garage.admin_api._errors import error_body, error_from
from garage.admin_api._router import ALLOWED_METHODS
from garage.admin_rpc import (
    AdminRpcError,
    BucketDetails,
    BucketKeyInfo,
    KeyBucketInfo,
    KeyDetails,
    LocalAliasInfo,
)
from garage_model.helper import (
    BadRequestError,
    BucketAlreadyExistsError,
    BucketNotEmptyError,
    InvalidBucketNameError,
    KeyAlreadyExistsError,
    NoSuchAccessKeyError,
    NoSuchBucketError,
)
from garage_rpc.layout import LayoutHistory, LayoutVersionError, NodeRole
from garage_util.data import FixedBytes32
from garage_util.errors import GarageError

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


def schema_of(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}", "components": COMPONENTS}


def conforms(value: object, name: str) -> None:
    jsonschema_rs.Draft202012Validator(schema_of(name)).validate(value)


# ------------------------------------------------------------------ the document


def test_the_openapi_document_is_valid_and_served_as_shipped() -> None:
    validate_openapi(DOC)
    assert json.loads(openapi_document()) == DOC
    ids = [op["operationId"] for item in DOC["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for item in DOC["paths"].values():
        for op in item.values():
            assert "default" in op["responses"]  # every error answer is documented


def test_the_document_describes_exactly_the_routes() -> None:
    documented = {(m.upper(), p) for p, item in DOC["paths"].items() for m in item}
    routed = {(m, p) for p, methods in ALLOWED_METHODS.items() for m in methods}
    assert documented == routed


def test_required_query_parameters_match_the_router() -> None:
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            required = {p["name"]: "x" for p in op.get("parameters", []) if p["required"]}
            query = "&".join(f"{k}={v}" for k, v in required.items())
            assert route(method.upper(), path, query).endpoint in Endpoint
            for name in required:  # each one is needed
                without = "&".join(f"{k}=x" for k in required if k != name)
                if path == "/check":
                    continue  # routed, then refused by the handler: see test_admin_api
                with pytest.raises(AdminApiError) as exc:
                    route(method.upper(), path, without)
                assert exc.value.status == 400


# ------------------------------------------------------------------ routing


@pytest.mark.parametrize(
    ("method", "path", "query", "endpoint", "params"),
    [
        ("GET", "/v1/key", "", Endpoint.LIST_KEYS, {}),
        ("GET", "/v1/key", "search=ab", Endpoint.GET_KEY_INFO, {"search": "ab"}),
        ("GET", "/v1/key", "id=GK1&showSecretKey=true&x=1", Endpoint.GET_KEY_INFO,
         {"id": "GK1", "showSecretKey": "true"}),
        ("POST", "/v1/key", "", Endpoint.CREATE_KEY, {}),
        ("POST", "/v1/key", "id=GK1", Endpoint.UPDATE_KEY, {"id": "GK1"}),
        ("GET", "/v1/bucket", "", Endpoint.LIST_BUCKETS, {}),
        ("GET", "/v1/bucket", "globalAlias=a%20b", Endpoint.GET_BUCKET_INFO, {"globalAlias": "a b"}),
        ("PUT", "/v1/bucket/alias/local", "id=1&accessKeyId=GK&alias=x",
         Endpoint.LOCAL_ALIAS_BUCKET, {"id": "1", "accessKeyId": "GK", "alias": "x"}),
        ("OPTIONS", "/anything", "", Endpoint.OPTIONS, {}),
        ("GET", "/metrics", "", Endpoint.METRICS, {}),
    ],
)  # fmt: skip
def test_route(
    method: str, path: str, query: str, endpoint: Endpoint, params: dict[str, str]
) -> None:
    r = route(method, path, query)
    assert (r.endpoint, r.params) == (endpoint, params)


@pytest.mark.parametrize(
    ("method", "path", "query", "status", "code"),
    [
        ("GET", "/v1/nope", "", 404, "NoSuchEndpoint"),
        ("GET", "/v1/key/", "", 404, "NoSuchEndpoint"),
        ("PATCH", "/v1/bucket", "", 405, "MethodNotAllowed"),
        ("HEAD", "/health", "", 405, "MethodNotAllowed"),
        ("DELETE", "/v1/bucket", "", 400, "BadRequest"),
        ("PUT", "/v1/bucket/alias/global", "id=1", 400, "BadRequest"),
        ("GET", "/v1/key", "id=a&id=b", 400, "BadRequest"),
        ("GET", "/v0/status", "", 400, "BadRequest"),
    ],
)
def test_route_refusals(method: str, path: str, query: str, status: int, code: str) -> None:
    with pytest.raises(AdminApiError) as exc:
        route(method, path, query)
    assert (exc.value.status, exc.value.code) == (status, code)


@given(
    method=st.sampled_from(METHODS),
    path=st.one_of(st.sampled_from(list(ALLOWED_METHODS)), st.text(max_size=30)),
    query=st.text(max_size=60),
)
def test_any_request_routes_or_is_refused_with_a_4xx(method: str, path: str, query: str) -> None:
    try:
        r = route(method, path, query)
    except AdminApiError as exc:
        status = exc.status
    else:
        status = 200
        assert isinstance(r.endpoint, Endpoint)
    assert 200 <= status < 500


def test_authorization_by_endpoint() -> None:
    assert Endpoint.HEALTH.authorization is Authorization.NONE
    assert Endpoint.CHECK_DOMAIN.authorization is Authorization.NONE
    assert Endpoint.OPENAPI.authorization is Authorization.NONE
    assert Endpoint.METRICS.authorization is Authorization.METRICS_TOKEN
    assert Endpoint.DELETE_BUCKET.authorization is Authorization.ADMIN_TOKEN


# ------------------------------------------------------------------ tokens


ADMIN, METRICS = "admin-secret", "metrics-secret"


@pytest.mark.parametrize(
    ("needed", "header", "admin", "metrics", "status"),
    [
        (Authorization.NONE, None, None, None, None),
        (Authorization.ADMIN_TOKEN, f"Bearer {ADMIN}", ADMIN, METRICS, None),
        (Authorization.ADMIN_TOKEN, f"bearer  {ADMIN} ", ADMIN, METRICS, None),
        (Authorization.ADMIN_TOKEN, None, ADMIN, METRICS, 401),
        (Authorization.ADMIN_TOKEN, f"Bearer {METRICS}", ADMIN, METRICS, 403),
        (Authorization.ADMIN_TOKEN, f"Bearer {ADMIN}x", ADMIN, METRICS, 403),
        (Authorization.ADMIN_TOKEN, ADMIN, ADMIN, METRICS, 403),
        (Authorization.ADMIN_TOKEN, f"Bearer {ADMIN}", None, METRICS, 403),  # disabled
        (Authorization.METRICS_TOKEN, None, ADMIN, None, None),  # open
        (Authorization.METRICS_TOKEN, f"Bearer {METRICS}", ADMIN, METRICS, None),
        (Authorization.METRICS_TOKEN, f"Bearer {ADMIN}", ADMIN, METRICS, None),
        (Authorization.METRICS_TOKEN, None, ADMIN, METRICS, 401),
        (Authorization.METRICS_TOKEN, "Bearer nope", None, METRICS, 403),
    ],
)
def test_check_authorization(
    needed: Authorization, header: str | None, admin: str | None, metrics: str | None,
    status: int | None,
) -> None:  # fmt: skip
    if status is None:
        check_authorization(needed, header, admin_token=admin, metrics_token=metrics)
        return
    with pytest.raises(AdminApiError) as exc:
        check_authorization(needed, header, admin_token=admin, metrics_token=metrics)
    assert exc.value.status == status
    if admin is None and needed is Authorization.ADMIN_TOKEN:
        assert "disabled" in exc.value.message


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (NoSuchBucketError("b"), 404, "NoSuchBucket"),
        (NoSuchAccessKeyError("GK"), 404, "NoSuchAccessKey"),
        (BucketAlreadyExistsError("b"), 409, "BucketAlreadyExists"),
        (BucketNotEmptyError("b"), 409, "BucketNotEmpty"),
        (KeyAlreadyExistsError("GK"), 409, "KeyAlreadyExists"),
        (InvalidBucketNameError("B"), 400, "InvalidBucketName"),
        (BadRequestError("no"), 400, "BadRequest"),
        (AdminRpcError("no"), 400, "BadRequest"),
        (LayoutVersionError(2, 3), 400, "BadRequest"),
    ],
)
def test_model_errors_map_to_statuses(exc: GarageError, status: int, code: str) -> None:
    mapped = error_from(exc)
    assert mapped is not None
    assert (mapped.status, mapped.code) == (status, code)
    body = json.loads(error_body(mapped, region="garage", path="/v1/bucket"))
    conforms(body, "Error")
    assert body["message"] == str(exc)


def test_unknown_errors_are_not_refusals() -> None:
    assert error_from(GarageError("disk on fire")) is None


# ------------------------------------------------------------------ the codec: requests


def _property_names(node: object) -> set[str]:
    if isinstance(node, list):
        return set().union(*map(_property_names, node))
    if not isinstance(node, dict):
        return set()
    own = set(node.get("properties", {}))
    return own.union(*map(_property_names, node.values()))


#: Every field name of the document, so that generated objects hit the ones parsers read.
FIELDS = sorted(_property_names(DOC))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=12,
)
PARSERS = [
    parse_key_creation, parse_key_import, parse_key_update, parse_bucket_creation,
    parse_bucket_update, parse_permission_change, parse_connect, parse_role_changes,
    parse_layout_version,
]  # fmt: skip


@given(value=JSON, parser=st.sampled_from(PARSERS))
def test_request_parsers_accept_or_refuse_with_400(value: object, parser: Any) -> None:
    status = 200
    try:
        parser(value)
    except AdminApiError as exc:
        status = exc.status
    assert status in (200, 400)


@given(st.binary(max_size=40))
def test_parse_json_accepts_json_or_refuses_with_400(raw: bytes) -> None:
    status = 200
    try:
        parse_json(raw)
    except AdminApiError as exc:
        status = exc.status
    assert status in (200, 400)


def test_parse_json_of_an_empty_body_and_a_huge_number() -> None:
    assert parse_json(b"") == {}
    assert parse_json(b" \n") == {}
    with pytest.raises(AdminApiError):
        parse_json(b"1" * 5000)  # past Python's int-from-string limit


def test_request_parsers_read_what_they_are_given() -> None:
    node = "ab" * 32
    changes = parse_role_changes(
        [{"id": node, "zone": "dc1", "capacity": MIN_CAPACITY, "tags": ["a"]},
         {"id": node.upper(), "remove": True},
         {"id": node, "zone": "gw", "capacity": None}]
    )  # fmt: skip
    assert [c.role for c in changes] == [
        NodeRole("dc1", MIN_CAPACITY, ("a",)), None, NodeRole("gw", None, ())]  # fmt: skip
    assert {c.node for c in changes} == {FixedBytes32.from_hex(node)}
    assert parse_key_update({"allow": {"createBucket": True}}).create_bucket is True
    assert parse_key_update({"deny": {"createBucket": True}}).create_bucket is False
    assert parse_key_update({"allow": {"createBucket": False}}).create_bucket is None
    update = parse_bucket_update({"quotas": {"maxSize": 5}})
    assert update.website is None
    assert update.quotas is not None
    assert (update.quotas.max_size, update.quotas.max_objects) == (5, None)
    creation = parse_bucket_creation({"localAlias": {"accessKeyId": "GK", "alias": "a"}})
    assert creation.local_alias is not None
    assert not creation.local_alias.read
    assert parse_layout_version({"version": 7}) == 7
    with pytest.raises(AdminApiError):
        parse_layout_version({"version": True})


# ------------------------------------------------------------------ the codec: responses

NAMES = st.text(max_size=10)
COUNT = st.integers(min_value=0, max_value=2**63 - 1)
HEX = st.binary(min_size=32, max_size=32).map(bytes.hex)
MAYBE = st.none() | COUNT


@given(
    st.builds(
        BucketDetails,
        id=HEX, created_ms=COUNT, global_aliases=st.tuples(NAMES),
        local_aliases=st.tuples(st.builds(LocalAliasInfo, NAMES, NAMES)),
        website=st.booleans(), index_document=NAMES, error_document=st.none() | NAMES,
        max_size=MAYBE, max_objects=MAYBE, objects=COUNT, bytes=COUNT,
        unfinished_uploads=COUNT, mpu_uploads=COUNT, mpu_parts=COUNT, mpu_bytes=COUNT,
        keys=st.lists(st.builds(BucketKeyInfo, NAMES, NAMES, st.booleans(), st.booleans(),
                                st.booleans(), st.tuples(NAMES)), max_size=3).map(tuple),
    )
)  # fmt: skip
def test_bucket_info_matches_the_document(details: BucketDetails) -> None:
    doc = bucket_info_json(details)
    conforms(doc, "BucketInfo")
    assert (doc["websiteConfig"] is None) == (not details.website)


@given(
    st.builds(
        KeyDetails, NAMES, NAMES, st.none() | NAMES, st.booleans(),
        st.lists(st.builds(KeyBucketInfo, HEX, st.tuples(NAMES), st.tuples(NAMES), st.booleans(),
                           st.booleans(), st.booleans()), max_size=3).map(tuple),
    )
)  # fmt: skip
def test_key_info_matches_the_document(details: KeyDetails) -> None:
    conforms(key_info_json(details), "KeyInfo")


def test_layout_json_shows_roles_and_staged_changes() -> None:
    a, b = FixedBytes32(b"\x01" * 32), FixedBytes32(b"\x02" * 32)
    history = LayoutHistory.new(1).stage_role(a, NodeRole("dc1", 10**9, ("x",)), now_ms=1)
    history, _ = history.apply_staged_changes(1, now_ms=2)
    history = history.stage_role(b, NodeRole("dc2", None, ()), now_ms=3)
    history = history.stage_removal(a, now_ms=4)
    doc: dict[str, Any] = layout_json(history)
    conforms(doc, "ClusterLayout")
    assert doc["version"] == 1
    assert doc["roles"] == [{"id": a.hex(), "zone": "dc1", "capacity": 10**9, "tags": ["x"]}]
    assert sorted(doc["stagedRoleChanges"], key=lambda c: c["id"]) == [
        {"id": a.hex(), "remove": True},
        {"id": b.hex(), "zone": "dc2", "capacity": None, "tags": []},
    ]
    # Re-staging the current role is not a change.
    same = history.revert_staged_changes(5).stage_role(a, NodeRole("dc1", 10**9, ("x",)), 6)
    assert layout_json(same)["stagedRoleChanges"] == []


def test_json_schema_conversion_handles_nullable() -> None:
    assert _json_schema({"type": "string", "nullable": True, "example": "x"}) == {
        "anyOf": [{"type": "string"}, {"type": "null"}]
    }
