"""Bucket CORS: the pure core (rule matching, answers, validation, XML), then against a
running node: Get/Put/DeleteBucketCors with boto3, and browser-shaped requests (raw httpx
with ``Origin`` and the preflight headers) on buckets with and without rules."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from garage.cli import main
from garage_api.s3 import S3Error
from garage_api.s3._cors import (
    CORS_METHODS,
    check_cors_rules,
    find_cors_rule,
    parse_request_headers,
    permissive_preflight_headers,
    preflight_headers,
    response_headers,
    wildcard_match,
)
from garage_api.s3._xml import CORSConfiguration, parse_cors_configuration
from garage_api.signature import sign_request
from garage_model.bucket_table import CorsRule

if TYPE_CHECKING:
    from tests.api.conftest import S3Node

APP = "https://app.example.com"
EVIL = "https://evil.example.net"

# ---------------------------------------------------------------------- the pure core


def _glob_regex(pattern: str) -> str:
    return ".*".join(re.escape(part) for part in pattern.split("*"))


@given(st.text("ab*", max_size=8), st.text("ab", max_size=10))
def test_wildcard_match_is_a_glob_of_stars(pattern: str, value: str) -> None:
    expected = re.fullmatch(_glob_regex(pattern), value, re.DOTALL) is not None
    assert wildcard_match(pattern, value) is expected


def test_wildcard_examples() -> None:
    assert wildcard_match("*", "")
    assert wildcard_match("https://*.example.com", "https://a.b.example.com")
    assert not wildcard_match("https://*.example.com", "https://example.com")
    assert not wildcard_match("https://*.example.com", "http://a.example.com")
    assert not wildcard_match("a*a", "a")  # head and tail may not overlap


def _rule(**kw: Any) -> CorsRule:
    base: dict[str, Any] = {"allow_origins": (APP,), "allow_methods": ("GET",)}
    return CorsRule(**{**base, **kw})


def test_first_matching_rule_wins() -> None:
    narrow = _rule(id="narrow", allow_methods=("PUT",), allow_headers=("content-type",))
    wide = _rule(
        id="wide", allow_origins=("*",), allow_methods=("GET", "PUT"), allow_headers=("*",)
    )
    rules = [narrow, wide]
    assert find_cors_rule(rules, APP, "PUT", ["Content-Type"]) is narrow  # case-insensitive
    assert find_cors_rule(rules, APP, "PUT", ["x-amz-date"]) is wide
    assert find_cors_rule(rules, EVIL, "PUT") is wide
    assert find_cors_rule(rules, EVIL, "DELETE") is None
    assert find_cors_rule([narrow], APP, "PUT", ["content-type", "x-other"]) is None


def test_allowed_header_wildcard() -> None:
    rule = _rule(allow_headers=("x-amz-*", "Authorization"))
    assert find_cors_rule([rule], APP, "GET", ["X-Amz-Date", "authorization"]) is rule
    assert find_cors_rule([rule], APP, "GET", ["x-amz-date", "range"]) is None


def test_parse_request_headers() -> None:
    assert parse_request_headers(None) == ()
    assert parse_request_headers(" Content-Type ,x-amz-date,, ") == ("content-type", "x-amz-date")


def test_preflight_answer_of_a_matching_rule() -> None:
    rule = _rule(
        allow_methods=("GET", "PUT"),
        allow_headers=("*",),
        expose_headers=("ETag",),
        max_age_seconds=600,
    )
    request = {
        "origin": APP,
        "access-control-request-method": "PUT",
        "access-control-request-headers": "content-type, x-amz-date",
    }
    headers = dict(preflight_headers([rule], request))
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-allow-methods"] == "GET, PUT"
    assert headers["access-control-allow-headers"] == "content-type, x-amz-date"
    assert headers["access-control-expose-headers"] == "ETag"
    assert headers["access-control-max-age"] == "600"
    assert "Origin" in headers["vary"]


def test_any_origin_is_answered_with_a_star() -> None:
    rule = _rule(allow_origins=("*",))
    request = {"origin": EVIL, "access-control-request-method": "GET"}
    headers = dict(preflight_headers([rule], request))
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers
    assert "access-control-allow-headers" not in headers


@pytest.mark.parametrize(
    ("rules", "request_headers", "code", "status"),
    [
        ([_rule()], {"access-control-request-method": "GET"}, "BadRequest", 400),
        ([_rule()], {"origin": APP}, "BadRequest", 400),
        (None, {"origin": APP, "access-control-request-method": "GET"}, "AccessForbidden", 403),
        ([_rule()], {"origin": EVIL, "access-control-request-method": "GET"}, "AccessForbidden", 403),
        ([_rule()], {"origin": APP, "access-control-request-method": "PUT"}, "AccessForbidden", 403),
        (
            [_rule()],
            {
                "origin": APP,
                "access-control-request-method": "GET",
                "access-control-request-headers": "x-amz-date",
            },
            "AccessForbidden",
            403,
        ),
    ],
)  # fmt: skip
def test_preflight_refusals(
    rules: list[CorsRule] | None, request_headers: dict[str, str], code: str, status: int
) -> None:
    with pytest.raises(S3Error) as exc:
        preflight_headers(rules, request_headers)
    assert (exc.value.code, exc.value.status) == (code, status)


def test_permissive_preflight_repeats_the_requested_headers() -> None:
    request = {"origin": EVIL, "access-control-request-headers": "Authorization, X-Amz-Date"}
    headers = dict(permissive_preflight_headers(request))
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == ", ".join(CORS_METHODS)
    assert headers["access-control-allow-headers"] == "authorization, x-amz-date"
    assert dict(permissive_preflight_headers({}, ("GET",))) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET",
    }


def test_actual_response_headers() -> None:
    rule = _rule(allow_methods=("GET", "HEAD"), allow_headers=("range",), expose_headers=("ETag",))
    headers = dict(response_headers([rule], "GET", {"Origin": APP}))
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-methods"] == "GET, HEAD"
    assert headers["access-control-allow-headers"] == "range"
    assert headers["access-control-expose-headers"] == "ETag"
    assert "Origin" in headers["vary"]
    assert response_headers([rule], "PUT", {"Origin": APP}) == []
    assert response_headers([rule], "GET", {"Origin": EVIL}) == []
    assert response_headers([rule], "GET", {}) == []
    assert response_headers(None, "GET", {"Origin": APP}) == []


@pytest.mark.parametrize(
    ("rules", "code"),
    [
        ([], "MalformedXML"),
        ([_rule(allow_origins=())], "MalformedXML"),
        ([_rule(allow_methods=())], "MalformedXML"),
        ([_rule(allow_methods=("PATCH",))], "InvalidRequest"),
        ([_rule(allow_methods=("get",))], "InvalidRequest"),
        ([_rule(allow_origins=("https://*.*.example.com",))], "InvalidRequest"),
        ([_rule(allow_headers=("x-*-*",))], "InvalidRequest"),
        ([_rule(allow_headers=("bad header",))], "InvalidRequest"),
        ([_rule(expose_headers=("x\r\nset-cookie: a=b",))], "InvalidRequest"),
        ([_rule(id="x" * 256)], "InvalidRequest"),
        ([_rule()] * 101, "InvalidRequest"),
    ],
)
def test_invalid_rules(rules: list[CorsRule], code: str) -> None:
    with pytest.raises(S3Error) as exc:
        check_cors_rules(rules)
    assert (exc.value.code, exc.value.status) == (code, 400)


_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_value = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S"), exclude_characters="*"),
    min_size=1,
    max_size=20,
)
_rules = st.lists(
    st.builds(
        CorsRule,
        id=st.none() | _value,
        max_age_seconds=st.none() | st.integers(0, 2**63 - 1),
        allow_origins=st.lists(_value | st.just("*"), min_size=1, max_size=3).map(tuple),
        allow_methods=st.lists(st.sampled_from(CORS_METHODS), min_size=1, max_size=5).map(tuple),
        allow_headers=st.lists(_token | st.just("*"), max_size=3).map(tuple),
        expose_headers=st.lists(_token, max_size=3).map(tuple),
    ),
    min_size=1,
    max_size=4,
).map(tuple)


@given(_rules)
def test_cors_xml_round_trip(rules: tuple[CorsRule, ...]) -> None:
    assert parse_cors_configuration(CORSConfiguration(rules).to_xml()) == rules


def test_cors_xml_parse() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
 <CORSRule>
   <ID> r1 </ID>
   <AllowedOrigin>http://www.example.com</AllowedOrigin>
   <AllowedMethod>PUT</AllowedMethod>
   <AllowedMethod>POST</AllowedMethod>
   <AllowedHeader>*</AllowedHeader>
   <MaxAgeSeconds>3000</MaxAgeSeconds>
   <ExposeHeader>x-amz-request-id</ExposeHeader>
 </CORSRule>
 <CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>
</CORSConfiguration>"""
    assert parse_cors_configuration(body) == (
        CorsRule(
            id="r1",
            max_age_seconds=3000,
            allow_origins=("http://www.example.com",),
            allow_methods=("PUT", "POST"),
            allow_headers=("*",),
            expose_headers=("x-amz-request-id",),
        ),
        CorsRule(allow_origins=("*",), allow_methods=("GET",)),
    )


@pytest.mark.parametrize(
    "body",
    [
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>",
        b"<WebsiteConfiguration/>",
        b"<CORSConfiguration/>",
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET"
        b"</AllowedMethod><MaxAgeSeconds>-1</MaxAgeSeconds></CORSRule></CORSConfiguration>",
    ],
)
def test_cors_xml_malformed(body: bytes) -> None:
    with pytest.raises(S3Error) as exc:
        parse_cors_configuration(body)
    assert exc.value.code == "MalformedXML"


# ---------------------------------------------------------------------- against a node


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _garage(node: S3Node, *args: str) -> Any:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["-c", str(node.data_dir / "garage.toml"), "--json", *args])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue()) if out.getvalue().strip() else None


@pytest.fixture
def shared(s3node: S3Node) -> str:
    """A bucket with a global name (made with the CLI; S3 makes local aliases), on which
    the quick-start key has every right: unauthenticated preflights can find it."""
    name = f"cors-{uuid.uuid4().hex[:8]}"
    _garage(s3node, "bucket", "create", name)
    _garage(s3node, "bucket", "allow", "--read", "--write", "--owner", "--key", s3node.key_id, name)
    return name


def _cors(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return list(s3.get_bucket_cors(Bucket=bucket)["CORSRules"])


APP_RULE = {
    "ID": "app",
    "AllowedOrigins": [APP],
    "AllowedMethods": ["GET", "PUT", "HEAD"],
    "AllowedHeaders": ["content-type", "x-amz-*"],
    "ExposeHeaders": ["ETag", "x-amz-request-id"],
    "MaxAgeSeconds": 3000,
}
ANY_RULE = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}


def test_put_get_delete_cors(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert _code(exc) == ("NoSuchCORSConfiguration", 404)
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [APP_RULE, ANY_RULE]})
    assert _cors(s3, bucket) == [APP_RULE, ANY_RULE]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [ANY_RULE]})
    assert _cors(s3, bucket) == [ANY_RULE]  # replaced, not merged
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert _code(exc) == ("NoSuchCORSConfiguration", 404)
    s3.delete_bucket_cors(Bucket=bucket)  # deleting nothing is fine


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ({"AllowedOrigins": [APP], "AllowedMethods": ["PATCH"]}, "InvalidRequest"),
        ({"AllowedOrigins": ["https://*.*.example.com"], "AllowedMethods": ["GET"]}, "InvalidRequest"),
        ({"AllowedOrigins": [APP], "AllowedMethods": ["GET"], "AllowedHeaders": ["a b"]}, "InvalidRequest"),
        ({"AllowedOrigins": [APP], "AllowedMethods": []}, "MalformedXML"),
    ],
)  # fmt: skip
def test_invalid_cors_leaves_the_rules_unchanged(
    s3: Any, bucket: str, rule: dict[str, Any], code: str
) -> None:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [ANY_RULE]})
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})
    assert _code(exc) == (code, 400)
    assert _cors(s3, bucket) == [ANY_RULE]


def _signed(
    node: S3Node, method: str, path: str, query: str, body: bytes, headers: list[tuple[str, str]]
) -> httpx.Response:
    host = urlsplit(node.endpoint).netloc
    signed = sign_request(
        method, path, query, [("host", host), *headers],
        key_id=node.key_id, secret=node.secret, region=node.region, service="s3",
        now_ms=int(time.time() * 1000), payload_hash=hashlib.sha256(body).hexdigest(),
    )  # fmt: skip
    return httpx.request(
        method, f"{node.endpoint}{path}?{query}", headers=signed, content=body, timeout=30
    )


def _error_code(r: httpx.Response) -> str:
    found = re.search(r"<Code>([^<]*)</Code>", r.text)
    assert found is not None, r.text
    return found.group(1)


def test_put_cors_checks_content_md5_and_xml(s3node: S3Node, s3: Any, bucket: str) -> None:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [ANY_RULE]})
    body = CORSConfiguration([CorsRule(allow_origins=(APP,), allow_methods=("PUT",))]).to_xml()
    wrong_md5 = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    r = _signed(s3node, "PUT", f"/{bucket}", "cors=", body, [("content-md5", wrong_md5)])
    assert (r.status_code, _error_code(r)) == (400, "BadDigest")
    r = _signed(s3node, "PUT", f"/{bucket}", "cors=", b"<CORSConfiguration><CORSRule>", [])
    assert (r.status_code, _error_code(r)) == (400, "MalformedXML")
    assert _cors(s3, bucket) == [ANY_RULE]
    right_md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    r = _signed(s3node, "PUT", f"/{bucket}", "cors=", body, [("content-md5", right_md5)])
    assert r.status_code == 200, r.text
    assert _cors(s3, bucket) == [{"AllowedOrigins": [APP], "AllowedMethods": ["PUT"]}]


def test_cors_needs_the_owner_permission(s3node: S3Node, s3: Any, shared: str) -> None:
    name = f"other-{uuid.uuid4().hex[:8]}"
    _garage(s3node, "key", "create", name)
    info = _garage(s3node, "key", "info", name, "--show-secret")
    key_id, secret = _key_of(info)
    _garage(s3node, "bucket", "allow", "--read", "--write", "--key", key_id, shared)
    node = type(s3node)(**{**s3node.__dict__, "key_id": key_id, "secret": secret})
    other = node.client()
    with pytest.raises(ClientError) as exc:
        other.put_bucket_cors(Bucket=shared, CORSConfiguration={"CORSRules": [ANY_RULE]})
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        other.get_bucket_cors(Bucket=shared)
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=shared)
    assert _code(exc) == ("NoSuchCORSConfiguration", 404)  # nothing was stored


def _key_of(info: Any) -> tuple[str, str]:
    def find(doc: object, names: tuple[str, ...]) -> str | None:
        if isinstance(doc, dict):
            for name in names:
                if isinstance(doc.get(name), str):
                    return str(doc[name])
            for value in doc.values():
                if (found := find(value, names)) is not None:
                    return found
        return None

    key_id = find(info, ("key_id", "access_key_id", "id"))
    secret = find(info, ("secret_key", "secret"))
    assert key_id is not None, info
    assert secret is not None, info
    return key_id, secret


# -- browser-shaped requests


def _preflight(
    node: S3Node, path: str, origin: str | None, method: str | None, headers: str | None = None
) -> httpx.Response:
    sent = {}
    if origin is not None:
        sent["Origin"] = origin
    if method is not None:
        sent["Access-Control-Request-Method"] = method
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return httpx.options(f"{node.endpoint}{path}", headers=sent, timeout=30)


def _cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def test_preflight_allowed_by_a_rule(s3node: S3Node, s3: Any, shared: str) -> None:
    s3.put_bucket_cors(Bucket=shared, CORSConfiguration={"CORSRules": [APP_RULE]})
    r = _preflight(s3node, f"/{shared}/photo.jpg", APP, "PUT", "content-type,x-amz-date")
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert r.headers["access-control-allow-methods"] == "GET, PUT, HEAD"
    assert r.headers["access-control-allow-headers"] == "content-type, x-amz-date"
    assert r.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    assert r.headers["access-control-max-age"] == "3000"
    assert "Origin" in r.headers["vary"]
    r = _preflight(s3node, f"/{shared}", APP, "GET")  # on the bucket itself (listing)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        (EVIL, "PUT", None),  # origin not allowed
        (APP, "DELETE", None),  # method not allowed
        (APP, "PUT", "content-type,x-custom"),  # one header not allowed
    ],
)
def test_preflight_refused(
    s3node: S3Node, s3: Any, shared: str, origin: str, method: str, headers: str | None
) -> None:
    s3.put_bucket_cors(Bucket=shared, CORSConfiguration={"CORSRules": [APP_RULE]})
    r = _preflight(s3node, f"/{shared}/photo.jpg", origin, method, headers)
    assert (r.status_code, _error_code(r)) == (403, "AccessForbidden")
    assert _cors_headers(r) == {}
    assert _cors(s3, shared) == [APP_RULE]


def test_preflight_without_rules_or_origin(s3node: S3Node, shared: str) -> None:
    r = _preflight(s3node, f"/{shared}/k", APP, "GET")
    assert (r.status_code, _error_code(r)) == (403, "AccessForbidden")
    r = _preflight(s3node, f"/{shared}/k", None, "GET")
    assert (r.status_code, _error_code(r)) == (400, "BadRequest")


def test_preflight_on_a_local_or_unknown_name_is_permissive(
    s3node: S3Node, s3: Any, bucket: str
) -> None:
    # The rules of a local alias cannot be found without the key: Garage allows everything.
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [APP_RULE]})
    for path in (f"/{bucket}/k", f"/no-such-{uuid.uuid4().hex[:8]}/k"):
        r = _preflight(s3node, path, EVIL, "DELETE", "authorization,x-amz-date")
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == "*"
        assert "DELETE" in r.headers["access-control-allow-methods"]
        assert r.headers["access-control-allow-headers"] == "authorization, x-amz-date"
    r = _preflight(s3node, "/", EVIL, "GET")  # ListBuckets
    assert r.status_code == 200
    assert r.headers["access-control-allow-methods"] == "GET"


def test_cors_headers_on_a_get(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="photo.jpg", Body=b"jpeg")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "photo.jpg"})

    r = httpx.get(url, headers={"Origin": APP}, timeout=30)
    assert (r.status_code, r.content) == (200, b"jpeg")
    assert _cors_headers(r) == {}  # no CORS configuration: nothing

    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [APP_RULE, ANY_RULE]})
    r = httpx.get(url, headers={"Origin": APP}, timeout=30)
    assert (r.status_code, r.content) == (200, b"jpeg")
    assert r.headers["access-control-allow-origin"] == APP
    assert r.headers["access-control-allow-methods"] == "GET, PUT, HEAD"
    assert r.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    assert "Origin" in r.headers["vary"]

    r = httpx.get(url, headers={"Origin": EVIL}, timeout=30)  # the second rule: any origin
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-expose-headers" not in r.headers

    r = httpx.get(url, timeout=30)  # not a browser
    assert _cors_headers(r) == {}


def test_cors_headers_on_a_presigned_put_from_a_browser(s3: Any, bucket: str) -> None:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [APP_RULE]})
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up.txt"})
    r = httpx.put(
        url, content=b"from the page", headers={"Origin": APP, "Content-Type": "text/plain"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert "ETag" in r.headers["access-control-expose-headers"]
    assert s3.get_object(Bucket=bucket, Key="up.txt")["Body"].read() == b"from the page"

    # Another origin: S3 still serves the request (CORS is the browser's business), but
    # says nothing that would let the page read the answer.
    r = httpx.put(url, content=b"from elsewhere", headers={"Origin": EVIL})
    assert r.status_code == 200, r.text
    assert _cors_headers(r) == {}
