"""The pure parts of the admin API: routing, tokens, the JSON codec, error mapping, and the
OpenAPI document itself (valid, and describing exactly the routes the router has).

Property tests feed arbitrary requests and JSON bodies to the router and the request
parsers: each either succeeds or refuses with a 4xx :class:`AdminApiError`, never anything
else; and whatever the response builders are given, their output matches the document.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi
from schemathesis.core import NotSet
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
    parse_key_import,
    parse_key_update,
    parse_layout_version,
    parse_permission_change,
    parse_role_changes,
)
from garage.admin_api._errors import error_body, error_from
from garage.admin_api._router import ALLOWED_METHODS, V0_COMPATIBLE
from garage.admin_rpc import (
    AdminRpcError,
    BucketDetails,
    BucketKeyInfo,
    KeyBucketInfo,
    KeyDetails,
    LocalAliasInfo,
)
from garage_model.bucket_alias_table import is_valid_bucket_name
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

if TYPE_CHECKING:
    from collections.abc import Callable

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
        ("GET", "/v0/openapi.json", "", 404, "NoSuchEndpoint"),  # v0 had none
        ("GET", "/v0/nope", "", 404, "NoSuchEndpoint"),
        ("PATCH", "/v0/bucket", "", 405, "MethodNotAllowed"),
        ("DELETE", "/v0/key", "", 400, "BadRequest"),
    ],
)
def test_route_refusals(method: str, path: str, query: str, status: int, code: str) -> None:
    with pytest.raises(AdminApiError) as exc:
        route(method, path, query)
    assert (exc.value.status, exc.value.code) == (status, code)


@given(
    method=st.sampled_from(METHODS),
    path=st.one_of(
        st.sampled_from(list(ALLOWED_METHODS)),
        st.sampled_from(list(ALLOWED_METHODS)).map(lambda p: p.replace("/v1/", "/v0/")),
        st.text(max_size=30),
    ),
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


# ------------------------------------------------------------------ admin API v0


@pytest.mark.parametrize(
    ("method", "path", "query", "endpoint", "params"),
    [
        ("GET", "/v0/key", "", Endpoint.LIST_KEYS, {}),
        ("GET", "/v0/key", "id=GK1", Endpoint.GET_KEY_INFO, {"id": "GK1", "showSecretKey": "true"}),
        ("GET", "/v0/key", "search=x&showSecretKey=false", Endpoint.GET_KEY_INFO,
         {"search": "x", "showSecretKey": "true"}),  # v0 always showed the secret
        ("POST", "/v0/key", "", Endpoint.CREATE_KEY, {}),
        ("DELETE", "/v0/key", "id=GK1", Endpoint.DELETE_KEY, {"id": "GK1"}),
        ("GET", "/v0/bucket", "", Endpoint.LIST_BUCKETS, {}),
        ("GET", "/v0/bucket", "globalAlias=b", Endpoint.GET_BUCKET_INFO, {"globalAlias": "b"}),
        ("PUT", "/v0/bucket", "id=1", Endpoint.UPDATE_BUCKET, {"id": "1"}),
        ("POST", "/v0/bucket/allow", "", Endpoint.BUCKET_ALLOW_KEY, {}),
        ("PUT", "/v0/bucket/alias/local", "id=1&accessKeyId=GK&alias=x",
         Endpoint.LOCAL_ALIAS_BUCKET, {"id": "1", "accessKeyId": "GK", "alias": "x"}),
        ("POST", "/v0/connect", "", Endpoint.CONNECT_CLUSTER_NODES, {}),
        ("POST", "/v0/layout/revert", "", Endpoint.REVERT_CLUSTER_LAYOUT, {}),
    ],
)  # fmt: skip
def test_v0_routes_to_its_v1_endpoint(
    method: str, path: str, query: str, endpoint: Endpoint, params: dict[str, str]
) -> None:
    r = route(method, path, query)
    assert (r.endpoint, r.params) == (endpoint, params)


def _v1_requests() -> list[tuple[str, str, str]]:
    """(method, path, query) reaching each endpoint of the document's /v1/ paths."""
    requests = []
    for path, item in DOC["paths"].items():
        if path.startswith("/v1/") and path != "/v1/openapi.json":
            for method, op in item.items():
                params = op.get("parameters", [])
                required = "&".join(f"{p['name']}=x" for p in params if p["required"])
                requests.append((method.upper(), path, required))
                if any(p["name"] == "id" and not p["required"] for p in params):
                    requests.append((method.upper(), path, "id=x"))  # the "with id" endpoint
    return requests


def test_v0_endpoints_whose_format_changed_are_refused_naming_their_v1_path() -> None:
    refused, served = set(), set()
    for method, path, query in _v1_requests():
        v1 = route(method, path, query).endpoint
        v0_path = "/v0/" + path.removeprefix("/v1/")
        if v1 in V0_COMPATIBLE:
            assert route(method, v0_path, query).endpoint is v1
            served.add(v1)
            continue
        with pytest.raises(AdminApiError) as exc:
            route(method, v0_path, query)
        assert (exc.value.status, exc.value.code) == (400, "BadRequest")
        assert f"{method} {path}" in exc.value.message
        assert v1.value in exc.value.message
        refused.add(v1)
    # Garage's list (router_v1.rs, Endpoint::from_v0): these changed format in v1.
    assert refused == {
        Endpoint.GET_CLUSTER_STATUS, Endpoint.GET_CLUSTER_HEALTH, Endpoint.GET_CLUSTER_LAYOUT,
        Endpoint.UPDATE_CLUSTER_LAYOUT, Endpoint.APPLY_CLUSTER_LAYOUT, Endpoint.UPDATE_KEY,
        Endpoint.IMPORT_KEY,
    }  # fmt: skip
    assert served == V0_COMPATIBLE


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
    parse_key_import, parse_key_update, parse_bucket_creation,
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


# ------------------------------------------------------------------ the document's requests

BUCKET_NAME: dict[str, Any] = DOC["components"]["schemas"]["BucketName"]
BUCKET_NAMES = jsonschema_rs.Draft202012Validator({"allOf": [_json_schema(BUCKET_NAME)]})
#: Names at the edges of the rule: lengths, ends, IPv4 addresses, punycode, "-s3alias".
NAME_EDGES = [
    "ab", "abc", "a" * 63, "a" * 64, "-ab", "ab-", ".ab", "ab.", "a..b", "a.-b", "Abc", "a_b",
    "1.2.3.4", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "xn--abc",
    "a.xn--bc", "axn--bc", "b-s3alias", "s3alias", "abc\n", "ab c", "é-ab",
]  # fmt: skip


@given(
    name=st.one_of(
        st.sampled_from(NAME_EDGES),
        st.text(alphabet="abx0123459n.-s3li", max_size=70),
        st.lists(st.integers(0, 300), min_size=3, max_size=5).map(lambda p: ".".join(map(str, p))),
        st.text(max_size=8),
    )
)
def test_the_bucket_name_schema_is_the_naming_rule(name: str) -> None:
    assert BUCKET_NAMES.is_valid(name) == is_valid_bucket_name(name)


def _bucket_name_schemas(node: object) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [s for n in node for s in _bucket_name_schemas(n)]
    if not isinstance(node, dict):
        return []
    own = [node] if node.get("pattern") == BUCKET_NAME["pattern"] else []
    return own + [s for v in node.values() for s in _bucket_name_schemas(v)]


def test_every_bucket_name_of_the_document_follows_the_rule() -> None:
    def rule(schema: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in schema.items() if k not in ("description", "nullable")}

    found = _bucket_name_schemas(DOC["paths"])
    # CreateBucket's globalAlias and localAlias.alias, PutBucket{Global,Local}Alias's alias.
    assert len(found) == 4
    assert all(rule(s) == rule(BUCKET_NAME) for s in found)


OPENAPI: Any = schemathesis.openapi.from_dict(DOC)
OPERATIONS = {op.ok().definition.raw["operationId"]: op.ok() for op in OPENAPI.get_all_operations()}
#: The parser of each request body.
BODY_PARSERS: dict[str, Callable[[object], object]] = {
    "AddNode": parse_connect,
    "AddLayout": parse_role_changes,
    "ApplyLayout": parse_layout_version,
    "CreateOrUpdateKey": parse_key_update,
    "ImportKey": parse_key_import,
    "CreateBucket": parse_bucket_creation,
    "UpdateBucket": parse_bucket_update,
    "AllowBucketKey": parse_permission_change,
    "DenyBucketKey": parse_permission_change,
}


def test_every_request_body_has_a_parser() -> None:
    with_body = {
        op["operationId"]
        for item in DOC["paths"].values()
        for op in item.values()
        if "requestBody" in op
    }
    assert with_body - set(BODY_PARSERS) == {"RevertLayout"}  # its body is ignored


@pytest.mark.parametrize("operation_id", sorted(BODY_PARSERS))
def test_request_bodies_the_document_allows_are_accepted(operation_id: str) -> None:
    """Positive data acceptance, without a node: whatever body the document allows (as
    schemathesis generates them), the parser takes, and every bucket name is valid."""

    @settings(max_examples=30, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=OPERATIONS[operation_id].as_strategy())
    def run(case: Any) -> None:
        body: Any = {} if isinstance(case.body, NotSet) else case.body  # no body: {}
        BODY_PARSERS[operation_id](body)
        if operation_id == "CreateBucket":
            local = body.get("localAlias") or {}
            for name in (body.get("globalAlias"), local.get("alias")):
                assert name is None or is_valid_bucket_name(name)

    run()


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"allow": {"createBucket": True}, "deny": {"createBucket": True}}, False),
        ({"allow": {"createBucket": True}, "deny": {"createBucket": False}}, True),
        ({"allow": {"createBucket": True}, "deny": None}, True),
        ({"allow": {}, "deny": {"createBucket": True}}, True),
    ],
)
def test_the_key_update_schema_refuses_allow_and_deny_together(
    body: dict[str, object], valid: bool
) -> None:
    schema = DOC["paths"]["/v1/key"]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema_rs.Draft202012Validator({"allOf": [_json_schema(schema["schema"])]})
    assert validator.is_valid(body) == valid
    if valid:
        parse_key_update(body)
    else:
        with pytest.raises(AdminApiError):
            parse_key_update(body)


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
