"""Bucket website configuration: the XML codec, then Get/Put/DeleteBucketWebsite with boto3
against a running node, and the configurations Garage refuses (with nothing stored)."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from garage_api.s3 import S3Error
from garage_api.s3._xml import WebsiteConfiguration, parse_website_configuration
from garage_api.signature import sign_request
from garage_model.bucket_table import WebsiteConfig

if TYPE_CHECKING:
    from tests.api.conftest import S3Node

# ---------------------------------------------------------------------- the XML codec

_name = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S"), exclude_characters="/"),
    min_size=1,
    max_size=30,
)


@given(_name, st.none() | _name.map(lambda s: f"errors/{s}"))
def test_website_xml_round_trip(index: str, error: str | None) -> None:
    config = WebsiteConfig(index, error)
    assert parse_website_configuration(WebsiteConfiguration(config).to_xml()) == config


def test_website_xml_parse() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<WebsiteConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <ErrorDocument><Key>404.html</Key></ErrorDocument>
  <IndexDocument><Suffix>index.html</Suffix></IndexDocument>
  <RoutingRules/>
</WebsiteConfiguration>"""
    assert parse_website_configuration(body) == WebsiteConfig("index.html", "404.html")


_REDIRECT = "<RedirectAllRequestsTo><HostName>example.com</HostName></RedirectAllRequestsTo>"
_INDEX = "<IndexDocument><Suffix>index.html</Suffix></IndexDocument>"
_RULES = (
    "<RoutingRules><RoutingRule><Condition><KeyPrefixEquals>a/</KeyPrefixEquals></Condition>"
    "<Redirect><ReplaceKeyPrefixWith>b/</ReplaceKeyPrefixWith></Redirect></RoutingRule>"
    "</RoutingRules>"
)


@pytest.mark.parametrize(
    ("inner", "code", "status"),
    [
        (_REDIRECT, "NotImplemented", 501),
        (_INDEX + _RULES, "NotImplemented", 501),
        (_REDIRECT + _INDEX, "InvalidRequest", 400),
        ("", "InvalidArgument", 400),
        ("<ErrorDocument><Key>e.html</Key></ErrorDocument>", "InvalidArgument", 400),
        ("<IndexDocument><Suffix>a/index.html</Suffix></IndexDocument>", "InvalidArgument", 400),
        ("<IndexDocument><Suffix></Suffix></IndexDocument>", "InvalidArgument", 400),
        ("<IndexDocument/>", "MalformedXML", 400),
        (_INDEX + "<ErrorDocument><Key> </Key></ErrorDocument>", "InvalidArgument", 400),
        (_INDEX + "<ErrorDocument/>", "MalformedXML", 400),
    ],
)
def test_website_xml_refused(inner: str, code: str, status: int) -> None:
    body = f"<WebsiteConfiguration>{inner}</WebsiteConfiguration>".encode()
    with pytest.raises(S3Error) as exc:
        parse_website_configuration(body)
    assert (exc.value.code, exc.value.status) == (code, status)


def test_website_xml_malformed() -> None:
    for body in (b"<WebsiteConfiguration>", b"<CORSConfiguration/>", b"not xml"):
        with pytest.raises(S3Error) as exc:
            parse_website_configuration(body)
        assert exc.value.code == "MalformedXML"


# ---------------------------------------------------------------------- against a node


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _website(s3: Any, bucket: str) -> dict[str, Any]:
    got = s3.get_bucket_website(Bucket=bucket)
    return {k: v for k, v in got.items() if k != "ResponseMetadata"}


SITE = {"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "errors/404.html"}}


def test_put_get_delete_website(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_website(Bucket=bucket)
    assert _code(exc) == ("NoSuchWebsiteConfiguration", 404)

    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=SITE)
    assert _website(s3, bucket) == SITE

    only_index = {"IndexDocument": {"Suffix": "home.htm"}}
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=only_index)
    assert _website(s3, bucket) == only_index  # replaced: no error document any more

    assert s3.delete_bucket_website(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_website(Bucket=bucket)
    assert _code(exc) == ("NoSuchWebsiteConfiguration", 404)
    s3.delete_bucket_website(Bucket=bucket)  # deleting nothing is fine


@pytest.mark.parametrize(
    ("config", "code", "status"),
    [
        ({"RedirectAllRequestsTo": {"HostName": "example.com"}}, "NotImplemented", 501),
        (
            {
                "IndexDocument": {"Suffix": "index.html"},
                "RoutingRules": [
                    {
                        "Condition": {"KeyPrefixEquals": "docs/"},
                        "Redirect": {"ReplaceKeyPrefixWith": "documents/"},
                    }
                ],
            },
            "NotImplemented",
            501,
        ),
        ({"IndexDocument": {"Suffix": "dir/index.html"}}, "InvalidArgument", 400),
        ({"ErrorDocument": {"Key": "404.html"}}, "InvalidArgument", 400),
    ],
)
def test_refused_website_leaves_the_configuration_unchanged(
    s3: Any, bucket: str, config: dict[str, Any], code: str, status: int
) -> None:
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=SITE)
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=config)
    assert _code(exc) == (code, status)
    assert _website(s3, bucket) == SITE


def _signed_put(
    node: S3Node, path: str, query: str, body: bytes, headers: list[tuple[str, str]]
) -> httpx.Response:
    host = urlsplit(node.endpoint).netloc
    signed = sign_request(
        "PUT", path, query, [("host", host), *headers],
        key_id=node.key_id, secret=node.secret, region=node.region, service="s3",
        now_ms=int(time.time() * 1000), payload_hash=hashlib.sha256(body).hexdigest(),
    )  # fmt: skip
    return httpx.put(f"{node.endpoint}{path}?{query}", headers=signed, content=body, timeout=30)


def _error_code(r: httpx.Response) -> str:
    found = re.search(r"<Code>([^<]*)</Code>", r.text)
    assert found is not None, r.text
    return found.group(1)


def test_put_website_checks_content_md5_and_xml(s3node: S3Node, s3: Any, bucket: str) -> None:
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=SITE)
    body = WebsiteConfiguration(WebsiteConfig("other.html")).to_xml()
    wrong_md5 = base64.b64encode(hashlib.md5(b"not the body").digest()).decode()
    r = _signed_put(s3node, f"/{bucket}", "website=", body, [("content-md5", wrong_md5)])
    assert (r.status_code, _error_code(r)) == (400, "BadDigest")
    r = _signed_put(s3node, f"/{bucket}", "website=", b"<WebsiteConfiguration><Index", [])
    assert (r.status_code, _error_code(r)) == (400, "MalformedXML")
    assert _website(s3, bucket) == SITE
    right_md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    r = _signed_put(s3node, f"/{bucket}", "website=", body, [("content-md5", right_md5)])
    assert r.status_code == 200, r.text
    assert _website(s3, bucket) == {"IndexDocument": {"Suffix": "other.html"}}
