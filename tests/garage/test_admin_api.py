"""The admin HTTP API v1 against a real node: every endpoint through httpx, the tokens on
every operation of the document, the v0 paths, and the JSON shapes checked against the
node's own OpenAPI document.

One node per module: ``garage server --single-node`` as a real process, with an admin API
on a free port of 127.0.0.1, its generated tokens, and root domains for S3 and the web
server (``/check``). What the API changes is checked where it matters: through the S3 API
(boto3 with the keys the API made) and through the CLI (``garage --json ...``). Each JSON
answer is validated against the operation's response schema in ``/v1/openapi.json``
(:func:`validate`), so the document and the code cannot drift apart.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import uuid
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import jsonschema_rs
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.api.conftest import GARAGE, S3Node, free_port, stop

from garage.admin_api import openapi_document
from garage.cli import main
from garage.server import prepare_single_node

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

S3_ROOT = "s3.garage.test"
WEB_ROOT = "web.garage.test"


# ------------------------------------------------------------------ the node


@dataclass
class AdminNode:
    """A running single node and its admin API."""

    s3: S3Node
    admin: str
    admin_token: str | None
    metrics_token: str | None

    @property
    def config(self) -> Path:
        return self.s3.data_dir / "garage.toml"

    def http(self, token: str | None = None) -> httpx.Client:
        """An httpx client of the admin API (with the admin token unless told otherwise)."""
        headers = {} if token == "" else {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.admin, headers=headers, timeout=60)


def start_admin_node(data_dir: Path, *, edit: Any = None) -> AdminNode:
    """Writes the quick start's configuration (``edit(text) -> text`` may change it), then
    starts ``garage server --single-node`` on it and reads its summary."""
    config = prepare_single_node(
        data_dir,
        s3_api_bind="127.0.0.1:0",
        rpc_bind=f"127.0.0.1:{free_port()}",
        admin_bind="127.0.0.1:0",
    )
    if edit is not None:
        config.write_text(edit(config.read_text()))
    proc = subprocess.Popen(
        [str(GARAGE), "server", "--single-node", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    text = ""
    for line in proc.stdout:
        text += line
        if line.startswith("Stop it with"):
            break
    fields = dict(re.findall(r"^  ([A-Za-z0-9 ]+):\s+(\S+)$", text, re.M))
    if "Admin API" not in fields:
        proc.kill()
        raise AssertionError(f"the node did not print its admin API: {text!r} ({proc.wait()})")
    s3 = S3Node(
        fields["S3 endpoint"],
        fields["Key ID"],
        fields["Secret key"],
        fields["S3 region"],
        data_dir,
        proc,
    )
    return AdminNode(
        s3, fields["Admin API"], fields.get("Admin token"), fields.get("Metrics token")
    )


def with_root_domains(text: str) -> str:
    """The quick start's configuration with S3 and web root domains (for ``/check``)."""
    text = text.replace("[s3_api]\n", f'[s3_api]\nroot_domain = ".{S3_ROOT}"\n')
    return text + f'\n[s3_web]\nbind_addr = "127.0.0.1:0"\nroot_domain = ".{WEB_ROOT}"\n'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminNode]:
    started = start_admin_node(tmp_path_factory.mktemp("admin") / "node", edit=with_root_domains)
    try:
        yield started
    finally:
        assert stop(started.s3) == 0


# ------------------------------------------------------------------ schema checks


def _json_schema(node: object) -> object:
    """An OpenAPI 3.0 schema as JSON Schema: ``nullable`` becomes a union with null."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


DOC: dict[str, Any] = json.loads(openapi_document())
COMPONENTS = _json_schema(DOC["components"])


def response_schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    """The JSON schema of an answer, from the document (None: documented without a body).

    Fails the test when the document has no such operation or status.
    """
    operation = DOC["paths"][path][method.lower()]
    responses = operation["responses"]
    response = responses.get(str(status)) or responses.get("default")
    assert response is not None, f"{method} {path} -> {status} is not documented"
    content = response.get("content")
    if content is None:
        return None
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return None
    return {"allOf": [_json_schema(schema)], "components": COMPONENTS}


def validate(method: str, path: str, response: httpx.Response) -> Any:
    """Checks ``response`` against the document; returns its JSON (None when empty)."""
    schema = response_schema(method, path, response.status_code)
    if schema is None:
        assert response.content == b"", f"{method} {path}: undocumented body"
        return None
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    jsonschema_rs.Draft202012Validator(schema).validate(body)
    return body


def api(
    node: AdminNode,
    method: str,
    path: str,
    *,
    expect: int = 200,
    params: dict[str, str] | None = None,
    body: object = None,
    content: bytes | None = None,
    token: str | None = None,
) -> Any:
    """One request to the admin API: checks the status and the document; returns the JSON."""
    with node.http(token) as client:
        r = client.request(method, path, params=params, json=body, content=content)
    assert r.status_code == expect, r.text
    return validate(method, path, r)


def error(node: AdminNode, method: str, path: str, expect: int, code: str, **kw: Any) -> str:
    """A request that must be refused with ``code``; the message."""
    doc = api(node, method, path, expect=expect, **kw)
    assert doc["code"] == code, doc
    assert doc["path"] == path
    assert doc["region"] == "garage"
    return str(doc["message"])


def cli(node: AdminNode, *args: str) -> Any:
    """``garage -c <config> --json <args>`` (the CLI, in this process); its JSON."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["-c", str(node.config), "--json", *args])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


def s3_client(node: AdminNode, key_id: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=node.s3.endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="garage",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def s3_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_key(node: AdminNode, name: str | None = None) -> dict[str, Any]:
    key: dict[str, Any] = api(node, "POST", "/v1/key", body={"name": name or unique("key")})
    return key


def new_bucket(node: AdminNode, alias: str | None = None) -> dict[str, Any]:
    bucket: dict[str, Any] = api(
        node, "POST", "/v1/bucket", body={"globalAlias": alias or unique("bucket")}
    )
    return bucket


# ------------------------------------------------------------------ special endpoints


def test_health_and_the_openapi_document_need_no_token(node: AdminNode) -> None:
    with node.http(token="") as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.headers["content-type"].startswith("text/plain")
        assert "fully operational" in health.text
        served = client.get("/v1/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOC


def test_cluster_status_and_health(node: AdminNode) -> None:
    node_id = (node.s3.data_dir / "meta" / "node_key.pub").read_bytes().hex()
    status = api(node, "GET", "/v1/status")
    assert status["node"] == node_id
    assert [n["id"] for n in status["knownNodes"]] == [node_id]
    (me,) = status["nodes"]
    assert me["isUp"]
    assert (me["role"]["zone"], me["draining"]) == ("dc1", False)
    assert status["layout"]["version"] == status["layoutVersion"] >= 1
    assert status["dbEngine"] == "sqlite"
    health = api(node, "GET", "/v1/health")
    assert health == {
        "status": "healthy",
        "knownNodes": 1,
        "connectedNodes": 1,
        "storageNodes": 1,
        "storageNodesOk": 1,
        "partitions": 256,
        "partitionsQuorum": 256,
        "partitionsAllOk": 256,
    }


def test_metrics_take_either_token_and_count_admin_requests(node: AdminNode) -> None:
    api(node, "GET", "/v1/health")
    assert node.metrics_token is not None
    for token in (node.metrics_token, node.admin_token):
        with node.http(token) as client:
            r = client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert 'api="admin",endpoint="GetClusterHealth",status="200"' in r.text
    error(node, "GET", "/metrics", 401, "Unauthorized", token="")
    error(node, "GET", "/metrics", 403, "Forbidden", token="not-the-token")


@pytest.mark.parametrize("header", ["Bearer", "Basic dXNlcjpwYXNz", "bearer wrong", "Token x"])
def test_malformed_authorization_headers_are_wrong_tokens(node: AdminNode, header: str) -> None:
    with httpx.Client(base_url=node.admin, headers={"Authorization": header}) as client:
        r = client.get("/v1/status")
    assert r.status_code == 403, r.text
    assert validate("GET", "/v1/status", r)["code"] == "Forbidden"


# ------------------------------------------------------------------ tokens, on every operation


@dataclass(frozen=True)
class Victims:
    """What a request could change: a key, a bucket it has a local alias of (with two
    global aliases, so that either may go), and the node's role in the layout."""

    key_id: str
    bucket_id: str
    global_aliases: tuple[str, str]
    local_alias: str


def make_victims(node: AdminNode) -> Victims:
    key_id = new_key(node)["accessKeyId"]
    first, second, local = unique("victim"), unique("victim"), unique("mine")
    bucket = api(node, "POST", "/v1/bucket", body={"globalAlias": first, "localAlias": {
        "accessKeyId": key_id, "alias": local, "allow": {"read": True}}})  # fmt: skip
    api(node, "PUT", "/v1/bucket/alias/global", params={"id": bucket["id"], "alias": second})
    return Victims(key_id, bucket["id"], (first, second), local)


@pytest.fixture(scope="module")
def victims(node: AdminNode) -> Victims:
    return make_victims(node)


#: Every operation of the document, as (method, path, operationId).
OPERATIONS = [
    (method.upper(), path, op["operationId"])
    for path, item in DOC["paths"].items()
    for method, op in item.items()
]
#: The operations the document says need no token.
OPEN = [o for o in OPERATIONS if DOC["paths"][o[1]][o[0].lower()].get("security") == []]
#: The operations that need the admin token (all but the open ones and /metrics).
ADMIN = [o for o in OPERATIONS if o not in OPEN and o[1] != "/metrics"]
#: Operations that change nothing, even when they succeed.
READ_ONLY = {"GetNodes", "GetHealth", "GetLayout", "ListKeysOrGetKeyInfo",
             "ListBucketsOrGetBucketInfo", "AddNode"}  # fmt: skip
#: Operations that act on staged layout changes: one is staged for them first.
ON_STAGED = {"ApplyLayout", "RevertLayout"}


def _role_change(node: AdminNode) -> tuple[dict[str, Any], int]:
    """A change of this node's role (one more tag), and the current layout version."""
    layout = api(node, "GET", "/v1/layout")
    (role,) = layout["roles"]
    return {**role, "tags": [*role["tags"], unique("tag")]}, int(layout["version"])


def request_of(node: AdminNode, v: Victims, operation_id: str) -> tuple[dict[str, str], object]:
    """Query parameters and JSON body (None: none) of a request that succeeds with the
    admin token, and changes ``v`` or the layout unless the operation is read-only."""
    bid, kid, (first, second) = v.bucket_id, v.key_id, v.global_aliases
    fresh = f"{first}-new"
    change, version = _role_change(node)
    requests: dict[str, tuple[dict[str, str], object]] = {
        "GetNodes": ({}, None),
        "GetHealth": ({}, None),
        "AddNode": ({}, [f"{'ab' * 32}@127.0.0.1:{free_port()}"]),
        "GetLayout": ({}, None),
        "AddLayout": ({}, [change]),
        "ApplyLayout": ({}, {"version": version + 1}),
        "RevertLayout": ({}, {"version": version + 1}),
        "ListKeysOrGetKeyInfo": ({"id": kid, "showSecretKey": "true"}, None),
        "CreateOrUpdateKey": ({"id": kid}, {"name": "renamed", "allow": {"createBucket": True}}),
        "DeleteKey": ({"id": kid}, None),
        "ImportKey": ({}, {"accessKeyId": f"GK{bid[:24]}", "secretAccessKey": bid}),
        "ListBucketsOrGetBucketInfo": ({"id": bid}, None),
        "CreateBucket": ({}, {"globalAlias": fresh}),
        "UpdateBucket": ({"id": bid}, {"quotas": {"maxObjects": 1}}),
        "DeleteBucket": ({"id": bid}, None),
        "AllowBucketKey": ({}, {"bucketId": bid, "accessKeyId": kid,
                                "permissions": {"read": False, "write": True, "owner": True}}),
        "DenyBucketKey": ({}, {"bucketId": bid, "accessKeyId": kid,
                               "permissions": {"read": True, "write": False, "owner": False}}),
        "PutBucketGlobalAlias": ({"id": bid, "alias": fresh}, None),
        "DeleteBucketGlobalAlias": ({"id": bid, "alias": second}, None),
        "PutBucketLocalAlias": ({"id": bid, "accessKeyId": kid, "alias": fresh}, None),
        "DeleteBucketLocalAlias": ({"id": bid, "accessKeyId": kid, "alias": v.local_alias}, None),
    }  # fmt: skip
    return requests[operation_id]


def snapshot(node: AdminNode, v: Victims) -> list[tuple[int, Any]]:
    """Everything a request of :func:`request_of` could change, read with the admin token."""
    with node.http() as client:
        answers = [
            client.get("/v1/bucket"),
            client.get("/v1/key"),
            client.get("/v1/layout"),
            client.get("/v1/bucket", params={"id": v.bucket_id}),
            client.get("/v1/key", params={"id": v.key_id, "showSecretKey": "true"}),
            client.get("/v1/bucket", params={"globalAlias": f"{v.global_aliases[0]}-new"}),
        ]
    return [(r.status_code, r.json()) for r in answers]


@contextmanager
def staged_if_needed(node: AdminNode, operation_id: str) -> Iterator[None]:
    """For ApplyLayout and RevertLayout, a staged change to apply or revert."""
    if operation_id not in ON_STAGED:
        yield
        return
    api(node, "POST", "/v1/layout", body=[_role_change(node)[0]])
    try:
        yield
    finally:
        api(node, "POST", "/v1/layout/revert")


def test_each_operation_is_open_admin_or_metrics() -> None:
    assert {o[2] for o in OPEN} == {"Health", "CheckDomain", "GetOpenApi"}
    assert len(ADMIN) == len(OPERATIONS) - 4
    assert "Metrics" not in {o[2] for o in ADMIN}


@pytest.mark.parametrize("credential", ["none", "wrong", "metrics"])
@pytest.mark.parametrize(("method", "path", "operation_id"), ADMIN, ids=[o[2] for o in ADMIN])
def test_every_admin_operation_refuses_a_missing_or_wrong_token_and_changes_nothing(
    node: AdminNode, victims: Victims, method: str, path: str, operation_id: str, credential: str
) -> None:
    headers = {
        "none": {},
        "wrong": {"Authorization": f"Bearer {node.admin_token}x"},
        "metrics": {"Authorization": f"Bearer {node.metrics_token}"},  # not an admin token
    }[credential]
    with staged_if_needed(node, operation_id):
        params, body = request_of(node, victims, operation_id)
        before = snapshot(node, victims)
        with httpx.Client(base_url=node.admin, headers=headers, timeout=60) as client:
            r = client.request(method, path, params=params, json=body)
        status, code = (401, "Unauthorized") if credential == "none" else (403, "Forbidden")
        assert r.status_code == status, r.text
        assert validate(method, path, r)["code"] == code
        assert r.headers.get("www-authenticate") == ("Bearer" if status == 401 else None)
        assert snapshot(node, victims) == before


@pytest.mark.parametrize(("method", "path", "operation_id"), ADMIN, ids=[o[2] for o in ADMIN])
def test_the_refused_requests_succeed_with_the_admin_token(
    node: AdminNode, method: str, path: str, operation_id: str
) -> None:
    """The control of the test above: each request it sends would have done something."""
    v = make_victims(node)
    with staged_if_needed(node, operation_id):
        params, body = request_of(node, v, operation_id)
        before = snapshot(node, v)
        with node.http() as client:
            r = client.request(method, path, params=params, json=body)
        assert 200 <= r.status_code < 300, r.text
        validate(method, path, r)
        assert (snapshot(node, v) != before) == (operation_id not in READ_ONLY)
    if operation_id == "ListKeysOrGetKeyInfo":
        assert r.json()["secretAccessKey"]  # what a refused request must not see


@pytest.mark.parametrize(("method", "path", "operation_id"), OPEN, ids=[o[2] for o in OPEN])
@pytest.mark.parametrize("token", ["", "wrong"])
def test_open_operations_need_no_token(
    node: AdminNode, victims: Victims, method: str, path: str, operation_id: str, token: str
) -> None:
    params = {"domain": f"{victims.global_aliases[0]}.{S3_ROOT}"} if path == "/check" else {}
    with node.http(token) as client:
        r = client.request(method, path, params=params)
    assert r.status_code == 200, r.text


def test_check_domain_for_on_demand_tls(node: AdminNode) -> None:
    bucket = new_bucket(node)
    name = bucket["globalAliases"][0]
    with node.http(token="") as client:

        def check(domain: str) -> int:
            return client.get("/check", params={"domain": domain}).status_code

        assert check(f"{name}.{S3_ROOT}") == 200  # an S3 vhost: any global bucket
        assert check(f"nope-{name}.{S3_ROOT}") == 400
        assert check(f"{name}.{WEB_ROOT}") == 400  # a website: only with website access
        assert check(name) == 400
        assert client.get("/check").status_code == 400
        api(node, "PUT", "/v1/bucket", params={"id": bucket["id"]},
            body={"websiteAccess": {"enabled": True, "indexDocument": "index.html"}})  # fmt: skip
        assert check(f"{name}.{WEB_ROOT}") == 200
        assert check(name) == 200
        assert check(name.upper()) == 200
        r = client.get("/check", params={"domain": name})
        assert r.text == f"Domain '{name}' is managed by Garage\n"


def test_unknown_routes_methods_and_bad_requests_are_clear_errors(node: AdminNode) -> None:
    with node.http() as client:
        r = client.get("/v1/nothing-here")
        assert (r.status_code, r.json()["code"]) == (404, "NoSuchEndpoint")
        r = client.patch("/v1/key")
        assert (r.status_code, r.json()["code"]) == (405, "MethodNotAllowed")
        assert r.headers["allow"] == "OPTIONS, DELETE, GET, POST"
        r = client.get("/v0/status")
        assert r.status_code == 400
        assert "/v1/status" in r.json()["message"]
        r = client.options("/v1/bucket", headers={"Origin": "https://example.org"})
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "*"
        assert "PUT" in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"]
    assert "not valid JSON" in error(
        node, "POST", "/v1/key", 400, "BadRequest", content=b"{not json"
    )
    assert "'name'" in error(node, "POST", "/v1/key", 400, "BadRequest", body={"name": 3})
    assert "id" in error(node, "DELETE", "/v1/key", 400, "BadRequest")
    assert "more than once" in _repeated_param(node)
    assert "64 hex digits" in error(
        node, "GET", "/v1/bucket", 400, "BadRequest", params={"id": "xyz"}
    )
    error(node, "GET", "/v1/bucket", 404, "NoSuchBucket", params={"id": "ab" * 32})
    error(node, "GET", "/v1/bucket", 404, "NoSuchBucket", params={"globalAlias": "nope-nope"})
    error(node, "GET", "/v1/key", 404, "NoSuchAccessKey", params={"id": "GK" + "0" * 24})
    error(node, "GET", "/v1/key", 400, "BadRequest", params={"id": "GK1", "search": "x"})


def _repeated_param(node: AdminNode) -> str:
    with node.http() as client:
        r = client.get("/v1/bucket?id=1&id=2")
    assert r.status_code == 400
    return str(validate("GET", "/v1/bucket", r)["message"])


# ------------------------------------------------------------------ admin API v0


def v0(
    node: AdminNode,
    method: str,
    path: str,
    *,
    expect: int = 200,
    params: dict[str, str] | None = None,
    body: object = None,
    token: str | None = None,
) -> Any:
    """A request to ``/v0/<path>``, checked against the document of ``/v1/<path>``."""
    with node.http(token) as client:
        r = client.request(method, f"/v0/{path}", params=params, json=body)
    assert r.status_code == expect, r.text
    return validate(method, f"/v1/{path}", r)


def test_admin_api_v0_is_answered_by_v1_where_the_format_did_not_change(node: AdminNode) -> None:
    key, bucket = new_key(node), new_bucket(node)
    kid, bid, name = key["accessKeyId"], bucket["id"], bucket["globalAliases"][0]
    # Read: the same answers as v1, except that v0 always showed the secret key.
    assert v0(node, "GET", "key") == api(node, "GET", "/v1/key")
    info = v0(node, "GET", "key", params={"id": kid, "showSecretKey": "false"})
    assert info == api(node, "GET", "/v1/key", params={"id": kid, "showSecretKey": "true"})
    assert info["secretAccessKey"] == key["secretAccessKey"]
    assert v0(node, "GET", "key", params={"search": kid})["accessKeyId"] == kid
    assert v0(node, "GET", "bucket", params={"id": bid}) == bucket
    assert v0(node, "GET", "bucket", params={"globalAlias": name}) == bucket
    assert v0(node, "GET", "bucket") == api(node, "GET", "/v1/bucket")
    # Write: the v1 handlers, seen through v1.
    other = unique("v0")
    created = v0(node, "POST", "bucket", body={"globalAlias": other})
    assert api(node, "GET", "/v1/bucket", params={"globalAlias": other})["id"] == created["id"]
    v0(node, "PUT", "bucket/alias/global", params={"id": created["id"], "alias": f"{other}-2"})
    perms = {"read": True, "write": False, "owner": False}
    v0(node, "POST", "bucket/allow", body={"bucketId": bid, "accessKeyId": kid,
                                          "permissions": perms})  # fmt: skip
    (k,) = api(node, "GET", "/v1/bucket", params={"id": bid})["keys"]
    assert (k["accessKeyId"], k["permissions"]) == (kid, perms)
    assert v0(node, "DELETE", "bucket", expect=204, params={"id": created["id"]}) is None
    error(node, "GET", "/v1/bucket", 404, "NoSuchBucket", params={"globalAlias": f"{other}-2"})
    # Tokens are checked as in v1.
    assert v0(node, "GET", "key", expect=401, token="")["code"] == "Unauthorized"
    assert v0(node, "DELETE", "key", expect=403, params={"id": kid},
              token="wrong")["code"] == "Forbidden"  # fmt: skip
    assert api(node, "GET", "/v1/key", params={"id": kid})["name"] == key["name"]
    with node.http() as client:  # CORS preflights know the v0 paths' methods
        r = client.options("/v0/bucket", headers={"Origin": "https://example.org"})
        assert "PUT" in r.headers["access-control-allow-methods"]
        assert client.get("/v0/nothing-here").json()["code"] == "NoSuchEndpoint"
        assert client.get("/v0/openapi.json").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", "status", {}, None),
        ("GET", "health", {}, None),
        ("GET", "layout", {}, None),
        ("POST", "layout", {}, []),
        ("POST", "layout/apply", {}, {"version": 1}),
        ("POST", "key", {"id": "key"}, {"name": "renamed-by-v0"}),
        ("POST", "key/import", {}, {"accessKeyId": "GK" + "1" * 24, "secretAccessKey": "1" * 64}),
    ],
)
def test_admin_api_v0_endpoints_whose_format_changed_are_refused(
    node: AdminNode, victims: Victims, method: str, path: str, params: dict[str, str],
    body: object,
) -> None:  # fmt: skip
    if params.get("id") == "key":
        params = {"id": victims.key_id}
    before = snapshot(node, victims)
    with node.http() as client:
        r = client.request(method, f"/v0/{path}", params=params, json=body)
    assert r.status_code == 400, r.text
    doc = validate(method, f"/v1/{path}", r)
    assert doc["code"] == "BadRequest"
    assert f"{method} /v1/{path}" in doc["message"]
    assert doc["path"] == f"/v0/{path}"
    assert snapshot(node, victims) == before


# ------------------------------------------------------------------ keys


def test_key_create_read_update_and_delete(node: AdminNode) -> None:
    name = unique("k")
    key = api(node, "POST", "/v1/key", body={"name": name})
    key_id, secret = key["accessKeyId"], key["secretAccessKey"]
    assert key["name"] == name
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert key["permissions"] == {"createBucket": False}
    assert {"id": key_id, "name": name} in api(node, "GET", "/v1/key")
    info = api(node, "GET", "/v1/key", params={"id": key_id})
    assert info["secretAccessKey"] is None  # hidden unless asked for
    shown = api(node, "GET", "/v1/key", params={"id": key_id, "showSecretKey": "true"})
    assert shown["secretAccessKey"] == secret
    assert api(node, "GET", "/v1/key", params={"search": name})["accessKeyId"] == key_id
    error(node, "GET", "/v1/key", 400, "BadRequest",
          params={"id": key_id, "showSecretKey": "yes"})  # fmt: skip

    s3 = s3_client(node, key_id, secret)
    own = unique("own")
    with pytest.raises(ClientError) as refused:
        s3.create_bucket(Bucket=own)
    assert s3_code(refused) == "AccessDenied"
    updated = api(node, "POST", "/v1/key", params={"id": key_id},
                  body={"name": name + "-2", "allow": {"createBucket": True}})  # fmt: skip
    assert updated["name"] == name + "-2"
    assert updated["permissions"] == {"createBucket": True}
    assert updated["secretAccessKey"] is None
    s3.create_bucket(Bucket=own)  # now allowed: the bucket is the key's local alias
    info = api(node, "GET", "/v1/key", params={"id": key_id})
    (bucket,) = info["buckets"]
    assert bucket["localAliases"] == [own]
    assert bucket["permissions"] == {"read": True, "write": True, "owner": True}
    assert cli(node, "key", "info", key_id)["name"] == name + "-2"
    denied = api(node, "POST", "/v1/key", params={"id": key_id},
                 body={"deny": {"createBucket": True}})  # fmt: skip
    assert denied["permissions"] == {"createBucket": False}
    error(node, "POST", "/v1/key", 400, "BadRequest", params={"id": key_id},
          body={"allow": {"createBucket": True}, "deny": {"createBucket": True}})  # fmt: skip

    # The key holds the only name of its bucket: deleting it is refused, nothing changes.
    assert "only alias" in error(node, "DELETE", "/v1/key", 400, "BadRequest",
                                 params={"id": key_id})  # fmt: skip
    s3.delete_bucket(Bucket=own)
    assert api(node, "DELETE", "/v1/key", params={"id": key_id}) is None
    error(node, "GET", "/v1/key", 404, "NoSuchAccessKey", params={"id": key_id})
    error(node, "DELETE", "/v1/key", 404, "NoSuchAccessKey", params={"id": key_id})
    with pytest.raises(ClientError) as gone:
        s3.list_buckets()
    assert s3_code(gone) == "InvalidAccessKeyId"


def test_key_without_a_name_and_update_of_a_missing_key(node: AdminNode) -> None:
    with node.http() as client:
        r = client.post("/v1/key")  # no body at all
    assert validate("POST", "/v1/key", r)["name"] == "Unnamed key"
    # Created with the permission to create buckets (Garage would ignore allow here).
    key = api(node, "POST", "/v1/key", body={"allow": {"createBucket": True}})
    assert key["permissions"] == {"createBucket": True}
    s3_client(node, key["accessKeyId"], key["secretAccessKey"]).create_bucket(Bucket=unique("own"))
    error(node, "POST", "/v1/key", 400, "BadRequest",
          body={"allow": {"createBucket": True}, "deny": {"createBucket": True}})  # fmt: skip
    error(node, "POST", "/v1/key", 404, "NoSuchAccessKey", params={"id": "GKnope"},
          body={"name": "x"})  # fmt: skip


def test_key_import(node: AdminNode) -> None:
    key_id = "GK" + uuid.uuid4().hex[:24]
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    body = {"accessKeyId": key_id, "secretAccessKey": secret, "name": "migrated"}
    key = api(node, "POST", "/v1/key/import", body=body)
    assert (key["accessKeyId"], key["secretAccessKey"], key["name"]) == (key_id, secret, "migrated")
    bucket = new_bucket(node)
    api(node, "POST", "/v1/bucket/allow", body={"bucketId": bucket["id"], "accessKeyId": key_id,
        "permissions": {"read": True, "write": True, "owner": False}})  # fmt: skip
    s3 = s3_client(node, key_id, secret)
    s3.put_object(Bucket=bucket["globalAliases"][0], Key="a", Body=b"imported")
    assert error(node, "POST", "/v1/key/import", 409, "KeyAlreadyExists", body=body)
    bad = {**body, "accessKeyId": "AKIAIOSFODNN7EXAMPLE"}
    assert "GK" in error(node, "POST", "/v1/key/import", 400, "BadRequest", body=bad)
    error(node, "POST", "/v1/key/import", 400, "BadRequest", body={"accessKeyId": key_id})
    assert s3.get_object(Bucket=bucket["globalAliases"][0], Key="a")["Body"].read() == b"imported"


# ------------------------------------------------------------------ buckets


def test_bucket_create_with_aliases_list_and_info(node: AdminNode) -> None:
    key = new_key(node)
    alias, local = unique("g"), unique("l")
    bucket = api(node, "POST", "/v1/bucket", body={
        "globalAlias": alias,
        "localAlias": {"accessKeyId": key["accessKeyId"], "alias": local,
                       "allow": {"read": True, "write": True}},
    })  # fmt: skip
    assert bucket["globalAliases"] == [alias]
    (k,) = bucket["keys"]
    assert k["accessKeyId"] == key["accessKeyId"]
    assert k["bucketLocalAliases"] == [local]
    assert k["permissions"] == {"read": True, "write": True, "owner": False}
    assert (bucket["websiteAccess"], bucket["websiteConfig"]) == (False, None)
    assert bucket["quotas"] == {"maxSize": None, "maxObjects": None}
    listed = [b for b in api(node, "GET", "/v1/bucket") if b["id"] == bucket["id"]]
    assert listed == [{
        "id": bucket["id"],
        "globalAliases": [alias],
        "localAliases": [{"accessKeyId": key["accessKeyId"], "alias": local}],
    }]  # fmt: skip
    assert api(node, "GET", "/v1/bucket", params={"globalAlias": alias}) == bucket
    assert api(node, "GET", "/v1/bucket", params={"id": bucket["id"]}) == bucket
    # The key reaches it by its local name through S3.
    s3 = s3_client(node, key["accessKeyId"], key["secretAccessKey"])
    s3.put_object(Bucket=local, Key="x", Body=b"12345")
    info = api(node, "GET", "/v1/bucket", params={"id": bucket["id"]})
    assert (info["objects"], info["bytes"]) == (1, 5)
    assert cli(node, "bucket", "info", alias)["id"] == bucket["id"]

    nameless = api(node, "POST", "/v1/bucket", body={})
    assert (nameless["globalAliases"], nameless["keys"]) == ([], [])


def test_bucket_creation_refusals_leave_nothing_behind(node: AdminNode) -> None:
    taken = new_bucket(node)["globalAliases"][0]
    before = len(api(node, "GET", "/v1/bucket"))
    error(node, "POST", "/v1/bucket", 409, "BucketAlreadyExists", body={"globalAlias": taken})
    error(node, "POST", "/v1/bucket", 400, "InvalidBucketName", body={"globalAlias": "Bad_Name"})
    error(
        node,
        "POST",
        "/v1/bucket",
        404,
        "NoSuchAccessKey",
        body={
            "globalAlias": unique("ok"),
            "localAlias": {"accessKeyId": "GKnope", "alias": "fine"},
        },
    )
    error(node, "POST", "/v1/bucket", 400, "BadRequest", body={"globalAlias": ["a"]})
    error(node, "POST", "/v1/bucket", 400, "BadRequest", body=[1, 2])
    assert len(api(node, "GET", "/v1/bucket")) == before


def test_bucket_allow_and_deny_as_seen_through_s3(node: AdminNode) -> None:
    bucket, key = new_bucket(node), new_key(node)
    name, bid, kid = bucket["globalAliases"][0], bucket["id"], key["accessKeyId"]
    s3 = s3_client(node, kid, key["secretAccessKey"])
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=name, Key="k", Body=b"v")
    assert s3_code(refused) == "AccessDenied"

    def change(path: str, **flags: bool) -> dict[str, bool]:
        perms = {"read": False, "write": False, "owner": False, **flags}
        info = api(node, "POST", path,
                   body={"bucketId": bid, "accessKeyId": kid, "permissions": perms})  # fmt: skip
        (k,) = info["keys"]
        return dict(k["permissions"])

    assert change("/v1/bucket/allow", read=True, write=True) == {
        "read": True, "write": True, "owner": False}  # fmt: skip
    s3.put_object(Bucket=name, Key="k", Body=b"v")
    assert change("/v1/bucket/allow") == {"read": True, "write": True, "owner": False}
    assert change("/v1/bucket/deny", write=True) == {"read": True, "write": False, "owner": False}
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=name, Key="k", Body=b"v2")
    assert s3_code(denied) == "AccessDenied"
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"v"
    (perm,) = cli(node, "key", "info", kid)["buckets"]
    assert (perm["read"], perm["write"]) == (True, False)
    error(node, "POST", "/v1/bucket/allow", 404, "NoSuchAccessKey", body={
        "bucketId": bid, "accessKeyId": "GKnope",
        "permissions": {"read": True, "write": True, "owner": True}})  # fmt: skip
    error(node, "POST", "/v1/bucket/allow", 400, "BadRequest", body={
        "bucketId": bid, "accessKeyId": kid, "permissions": {"read": True}})  # fmt: skip


def test_bucket_global_and_local_aliases(node: AdminNode) -> None:
    bucket, key = new_bucket(node), new_key(node)
    first, bid, kid = bucket["globalAliases"][0], bucket["id"], key["accessKeyId"]
    other, local = unique("other"), unique("mine")
    info = api(node, "PUT", "/v1/bucket/alias/global", params={"id": bid, "alias": other})
    assert sorted(info["globalAliases"]) == sorted([first, other])
    assert api(node, "GET", "/v1/bucket", params={"globalAlias": other})["id"] == bid
    info = api(node, "PUT", "/v1/bucket/alias/local",
               params={"id": bid, "accessKeyId": kid, "alias": local})  # fmt: skip
    (k,) = info["keys"]
    assert k["bucketLocalAliases"] == [local]
    (kb,) = api(node, "GET", "/v1/key", params={"id": kid})["buckets"]
    assert kb["localAliases"] == [local]
    taken = new_bucket(node)["globalAliases"][0]
    error(node, "PUT", "/v1/bucket/alias/global", 409, "BucketAlreadyExists",
          params={"id": bid, "alias": taken})  # fmt: skip

    info = api(node, "DELETE", "/v1/bucket/alias/global", params={"id": bid, "alias": first})
    assert info["globalAliases"] == [other]
    error(node, "GET", "/v1/bucket", 404, "NoSuchBucket", params={"globalAlias": first})
    info = api(node, "DELETE", "/v1/bucket/alias/local",
               params={"id": bid, "accessKeyId": kid, "alias": local})  # fmt: skip
    assert info["keys"] == []
    assert "last alias" in error(node, "DELETE", "/v1/bucket/alias/global", 400, "BadRequest",
                                 params={"id": bid, "alias": other})  # fmt: skip
    error(node, "DELETE", "/v1/bucket/alias/global", 400, "BadRequest",
          params={"id": bid, "alias": taken})  # fmt: skip
    assert cli(node, "bucket", "info", other)["global_aliases"] == [other]


def test_bucket_website_and_quotas(node: AdminNode) -> None:
    bucket = new_bucket(node)
    name, bid = bucket["globalAliases"][0], bucket["id"]
    web = {"enabled": True, "indexDocument": "index.html", "errorDocument": "404.html"}
    info = api(node, "PUT", "/v1/bucket", params={"id": bid}, body={"websiteAccess": web})
    assert info["websiteAccess"] is True
    assert info["websiteConfig"] == {"indexDocument": "index.html", "errorDocument": "404.html"}
    # Bad updates are refused and change nothing.
    error(node, "PUT", "/v1/bucket", 400, "BadRequest", params={"id": bid},
          body={"websiteAccess": {"enabled": True}})  # fmt: skip
    error(node, "PUT", "/v1/bucket", 400, "BadRequest", params={"id": bid},
          body={"websiteAccess": {"enabled": False, "indexDocument": "i.html"}})  # fmt: skip
    error(node, "PUT", "/v1/bucket", 400, "BadRequest", params={"id": bid},
          body={"quotas": {"maxSize": -1}})  # fmt: skip
    error(node, "PUT", "/v1/bucket", 400, "BadRequest", params={"id": bid},
          body={"quotas": {"maxObjects": 1.5}})  # fmt: skip
    assert api(node, "GET", "/v1/bucket", params={"id": bid}) == info
    assert cli(node, "bucket", "info", name)["website"] is True

    info = api(node, "PUT", "/v1/bucket", params={"id": bid},
               body={"quotas": {"maxObjects": 1, "maxSize": 10_000}})  # fmt: skip
    assert info["quotas"] == {"maxSize": 10_000, "maxObjects": 1}
    assert info["websiteAccess"] is True  # an absent part is left as it was
    s3 = node.s3.client()
    api(node, "POST", "/v1/bucket/allow", body={"bucketId": bid, "accessKeyId": node.s3.key_id,
        "permissions": {"read": True, "write": True, "owner": True}})  # fmt: skip
    s3.put_object(Bucket=name, Key="one", Body=b"1")
    with pytest.raises(ClientError) as over:
        s3.put_object(Bucket=name, Key="two", Body=b"2")
    assert s3_code(over) == "AccessDenied"
    info = api(node, "PUT", "/v1/bucket", params={"id": bid},
               body={"quotas": {}, "websiteAccess": {"enabled": False}})  # fmt: skip
    assert info["quotas"] == {"maxSize": None, "maxObjects": None}
    assert (info["websiteAccess"], info["websiteConfig"]) == (False, None)
    s3.put_object(Bucket=name, Key="two", Body=b"2")


def test_bucket_delete(node: AdminNode) -> None:
    bucket = new_bucket(node)
    name, bid = bucket["globalAliases"][0], bucket["id"]
    api(node, "POST", "/v1/bucket/allow", body={"bucketId": bid, "accessKeyId": node.s3.key_id,
        "permissions": {"read": True, "write": True, "owner": False}})  # fmt: skip
    s3 = node.s3.client()
    s3.put_object(Bucket=name, Key="still-here", Body=b"x")
    error(node, "DELETE", "/v1/bucket", 409, "BucketNotEmpty", params={"id": bid})
    assert s3.get_object(Bucket=name, Key="still-here")["Body"].read() == b"x"
    s3.delete_object(Bucket=name, Key="still-here")
    assert api(node, "DELETE", "/v1/bucket", expect=204, params={"id": bid}) is None
    error(node, "GET", "/v1/bucket", 404, "NoSuchBucket", params={"id": bid})
    error(node, "DELETE", "/v1/bucket", 404, "NoSuchBucket", params={"id": bid})
    assert new_bucket(node, name)["id"] != bid  # its name is free again


# ------------------------------------------------------------------ cluster and layout


def test_connect_reports_each_node(node: AdminNode) -> None:
    closed = free_port()
    results = api(node, "POST", "/v1/connect",
                  body=["not-a-node", f"{'ab' * 32}@127.0.0.1:{closed}"])  # fmt: skip
    assert [r["success"] for r in results] == [False, False]
    assert all(r["error"] for r in results)
    error(node, "POST", "/v1/connect", 400, "BadRequest", body={"node": "x"})


def test_layout_stage_revert_and_apply(node: AdminNode) -> None:
    node_id = (node.s3.data_dir / "meta" / "node_key.pub").read_bytes().hex()
    layout = api(node, "GET", "/v1/layout")
    version = layout["version"]
    (role,) = layout["roles"]
    assert (role["id"], layout["stagedRoleChanges"]) == (node_id, [])

    change = {"id": node_id, "zone": "dc9", "capacity": role["capacity"], "tags": ["fast"]}
    staged = api(node, "POST", "/v1/layout", body=[change])
    assert staged["stagedRoleChanges"] == [change]
    assert staged["roles"] == [role]  # nothing applied yet
    assert cli(node, "layout", "show")["staged_role_changes"][0]["zone"] == "dc9"
    reverted = api(node, "POST", "/v1/layout/revert", body={"version": version + 1})
    assert reverted["stagedRoleChanges"] == []
    assert cli(node, "layout", "show")["staged_role_changes"] == []
    error(node, "POST", "/v1/layout/apply", 400, "BadRequest", body={"version": version + 1})

    api(node, "POST", "/v1/layout", body=[change])
    assert "version" in error(node, "POST", "/v1/layout/apply", 400, "BadRequest",
                              body={"version": version + 5})  # fmt: skip
    assert api(node, "GET", "/v1/layout")["version"] == version
    applied = api(node, "POST", "/v1/layout/apply", body={"version": version + 1})
    assert applied["layout"]["version"] == version + 1
    assert applied["layout"]["roles"] == [{**change}]
    assert applied["layout"]["stagedRoleChanges"] == []
    assert any("partition" in line.lower() for line in applied["message"])
    assert cli(node, "status")["layout_version"] == version + 1
    # The node still serves S3 on its new layout.
    s3 = node.s3.client()
    s3.put_object(Bucket="default", Key="after-layout", Body=b"ok")
    assert s3.get_object(Bucket="default", Key="after-layout")["Body"].read() == b"ok"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "ab" * 32, "zone": "z", "capacity": 10, "tags": []}, "at least 1024"),
        ({"id": "not-hex", "zone": "z", "capacity": None, "tags": []}, "node id"),
        ({"id": "ab" * 32, "remove": False}, "remove"),
        ({"id": "ab" * 32, "zone": "", "capacity": None}, "zone"),
        ({"id": "ab" * 32, "zone": "z"}, "capacity"),
        ({"id": "ab" * 32, "zone": "z", "capacity": None, "tags": "t"}, "tags"),
    ],
)
def test_bad_layout_changes_stage_nothing(
    node: AdminNode, change: dict[str, object], message: str
) -> None:
    before = api(node, "GET", "/v1/layout")
    assert message in error(node, "POST", "/v1/layout", 400, "BadRequest", body=[change])
    assert api(node, "GET", "/v1/layout") == before


# ------------------------------------------------------------------ admin API disabled


def test_without_an_admin_token_the_admin_api_is_disabled(tmp_path: Path) -> None:
    def no_tokens(text: str) -> str:
        return re.sub(r"^(admin|metrics)_token = .*\n", "", text, flags=re.M)

    disabled = start_admin_node(tmp_path / "node", edit=no_tokens)
    try:
        assert (disabled.admin_token, disabled.metrics_token) == (None, None)
        with httpx.Client(base_url=disabled.admin) as client:
            r = client.get("/v1/status", headers={"Authorization": "Bearer anything"})
            assert r.status_code == 403
            assert "disabled" in validate("GET", "/v1/status", r)["message"]
            assert client.get("/v1/key").status_code == 403
            assert client.get("/health").status_code == 200
            metrics = client.get("/metrics")  # no metrics token: open
            assert metrics.status_code == 200
            assert "api_requests_total" in metrics.text
    finally:
        assert stop(disabled.s3) == 0
