"""The website server of a real node, with httpx: what a visitor's browser gets.

Objects and website configurations are written with boto3 (S3 PutObject,
PutBucketWebsite, PutBucketCors), global names with the CLI; pages are read from the
``[s3_web]`` server with the ``Host`` naming the site.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import uuid
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.web.conftest import BLOCK_SIZE, garage_cli, global_bucket, make_site

from garage.server import prepare_single_node
from garage_util.config import load_config

if TYPE_CHECKING:
    from pathlib import Path

    from tests.web.conftest import WebNode

INDEX = b"<!DOCTYPE html><title>home</title><p>Welcome home</p>"
ERROR = b"<!DOCTYPE html><title>oops</title><p>Custom error page</p>"
NO_SITE = b"There is no website at this address."


def put(s3: Any, bucket: str, key: str, body: bytes, content_type: str = "text/html") -> str:
    """Stores an object; its ETag (quoted)."""
    return str(s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)["ETag"])


def get(web: httpx.Client, host: str, path: str, **headers: str) -> httpx.Response:
    return web.get(path, headers={"host": host, **headers})


def raw_request(node: WebNode, request: bytes) -> tuple[int, bytes]:
    """Sends bytes as they are (no client normalises the path) and reads the answer to the
    end (the request asks for the connection to close); the status and the body."""
    with socket.create_connection((node.web_host, node.web_port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
def plain_site(webnode: WebNode, s3: Any) -> str:
    """A website without an error document."""
    return make_site(webnode, s3, error_document=False)


# ---------------------------------------------------------------------- pages


def test_index_documents_for_the_root_and_folders(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client
) -> None:
    put(s3, site, "index.html", INDEX)
    put(s3, site, "docs/index.html", b"<p>docs</p>")
    put(s3, site, "docs/guide.html", b"<p>guide</p>")
    host = webnode.site_host(site)

    root = get(web, host, "/")
    assert (root.status_code, root.content) == (200, INDEX)
    assert root.headers["content-type"] == "text/html"
    assert root.headers["etag"].startswith('"')
    assert root.headers["accept-ranges"] == "bytes"
    assert get(web, host, "/docs/").content == b"<p>docs</p>"
    assert get(web, host, "/docs/guide.html").content == b"<p>guide</p>"
    assert get(web, host, "/index.html").content == INDEX


def test_a_folder_without_its_slash_redirects_only_when_it_has_an_index(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client
) -> None:
    put(s3, site, "docs/index.html", b"<p>docs</p>")
    put(s3, site, "blog", b"<p>blog is a page</p>")
    put(s3, site, "blog/index.html", b"<p>blog folder</p>")
    put(s3, site, "café au lait/index.html", b"<p>menu</p>")
    host = webnode.site_host(site)

    found = get(web, host, "/docs")
    assert (found.status_code, found.headers["location"]) == (302, "/docs/")
    # An object with the folder's name wins over the redirect (AWS does the same).
    assert get(web, host, "/blog").content == b"<p>blog is a page</p>"
    assert get(web, host, "/blog/").content == b"<p>blog folder</p>"
    # The location is percent-encoded and leads to the folder's index.
    moved = get(web, host, "/caf%C3%A9%20au%20lait")
    assert (moved.status_code, moved.headers["location"]) == (302, "/caf%C3%A9%20au%20lait/")
    assert get(web, host, moved.headers["location"]).content == b"<p>menu</p>"
    # No index: no redirect.
    assert get(web, host, "/nothing").status_code == 404


def test_percent_encoded_paths_name_decoded_keys(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client
) -> None:
    put(s3, site, "hello world.html", b"spaces")
    put(s3, site, "a+b.html", b"plus")
    put(s3, site, "été/ünï.html", b"unicode")
    host = webnode.site_host(site)
    assert get(web, host, "/hello%20world.html").content == b"spaces"
    assert get(web, host, "/a+b.html").content == b"plus"
    assert get(web, host, "/a%2Bb.html").content == b"plus"
    assert get(web, host, "/%C3%A9t%C3%A9/%C3%BCn%C3%AF.html").content == b"unicode"
    assert get(web, host, "/%FF.html").status_code == 400


def test_dot_segments_are_plain_key_characters(
    webnode: WebNode, s3: Any, web: httpx.Client
) -> None:
    """``..`` cannot climb out of a site: it is part of a key of the same bucket."""
    other = make_site(webnode, s3, error_document=False)
    put(s3, other, "index.html", b"the other site")
    site = make_site(webnode, s3, error_document=False)
    host = webnode.site_host(site).encode()
    for path in (
        b"/../index.html",
        b"/%2e%2e/index.html",
        b"/../" + other.encode() + b"/index.html",
    ):
        request = b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        status, body = raw_request(webnode, request)
        assert status == 404, path
        assert b"the other site" not in body
    put(s3, site, "../index.html", b"a key with dots")
    request = b"GET /../index.html HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    assert raw_request(webnode, request) == (200, b"a key with dots")


def test_query_parameters_cannot_override_stored_headers(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client
) -> None:
    """A link cannot turn an uploaded text file into a page (``response-content-type``)."""
    put(s3, site, "notes.txt", b"<script>alert(1)</script>", content_type="text/plain")
    page = get(web, webnode.site_host(site), "/notes.txt?response-content-type=text/html")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/plain"


def test_large_objects_stream_whole_and_by_range(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client
) -> None:
    data = os.urandom(5 * BLOCK_SIZE + 1234)
    put(s3, site, "big.bin", data, content_type="application/octet-stream")
    host = webnode.site_host(site)
    whole = get(web, host, "/big.bin")
    assert whole.status_code == 200
    assert whole.headers["content-length"] == str(len(data))
    assert hashlib.sha256(whole.content).digest() == hashlib.sha256(data).digest()
    start, end = BLOCK_SIZE - 10, 3 * BLOCK_SIZE + 10  # across four blocks
    part = get(web, host, "/big.bin", range=f"bytes={start}-{end}")
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    assert part.content == data[start : end + 1]


def test_range_and_conditional_requests(
    webnode: WebNode, s3: Any, plain_site: str, web: httpx.Client
) -> None:
    etag = put(s3, plain_site, "page.html", b"0123456789")
    host = webnode.site_host(plain_site)
    page = get(web, host, "/page.html")
    last_modified = page.headers["last-modified"]

    part = get(web, host, "/page.html", range="bytes=2-5")
    assert (part.status_code, part.content) == (206, b"2345")
    assert part.headers["content-range"] == "bytes 2-5/10"
    suffix = get(web, host, "/page.html", range="bytes=-3")
    assert (suffix.status_code, suffix.content) == (206, b"789")
    outside = get(web, host, "/page.html", range="bytes=50-60")
    assert outside.status_code == 416
    assert outside.headers["content-range"] == "bytes */10"

    same = get(web, host, "/page.html", **{"if-none-match": etag})
    assert (same.status_code, same.content) == (304, b"")
    assert same.headers["etag"] == etag
    assert get(web, host, "/page.html", **{"if-none-match": '"other"'}).status_code == 200
    unchanged = get(web, host, "/page.html", **{"if-modified-since": last_modified})
    assert unchanged.status_code == 304
    long_ago = formatdate(0, usegmt=True)
    assert get(web, host, "/page.html", **{"if-modified-since": long_ago}).status_code == 200
    assert get(web, host, "/page.html", **{"if-match": '"other"'}).status_code == 412
    assert get(web, host, "/page.html", **{"if-match": etag}).content == b"0123456789"


def test_head_sends_the_headers_without_the_body(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client
) -> None:
    etag = put(s3, site, "index.html", INDEX)
    host = webnode.site_host(site)
    head = web.head("/", headers={"host": host})
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(INDEX))
    assert head.headers["etag"] == etag
    assert head.headers["content-type"] == "text/html"
    missing = web.head("/missing.html", headers={"host": host})
    # HEAD never gets the error document, only the status.
    assert (missing.status_code, missing.content) == (404, b"")


def test_objects_with_a_redirect_location_answer_301(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client
) -> None:
    s3.put_object(Bucket=site, Key="old.html", Body=b"", WebsiteRedirectLocation="/new.html")
    s3.put_object(
        Bucket=site, Key="away", Body=b"x" * 5000, WebsiteRedirectLocation="https://example.org/"
    )
    host = webnode.site_host(site)
    moved = get(web, host, "/old.html")
    assert (moved.status_code, moved.headers["location"], moved.content) == (301, "/new.html", b"")
    away = get(web, host, "/away")
    assert (away.status_code, away.headers["location"]) == (301, "https://example.org/")
    head = web.head("/old.html", headers={"host": host})
    assert (head.status_code, head.headers["location"]) == (301, "/new.html")


def test_encrypted_objects_are_not_served(
    webnode: WebNode, s3: Any, plain_site: str, web: httpx.Client
) -> None:
    key = os.urandom(32)
    s3.put_object(
        Bucket=plain_site,
        Key="secret.html",
        Body=b"top secret plaintext",
        SSECustomerAlgorithm="AES256",
        SSECustomerKey=base64.b64encode(key).decode(),
        SSECustomerKeyMD5=base64.b64encode(hashlib.md5(key).digest()).decode(),
    )
    page = get(web, webnode.site_host(plain_site), "/secret.html")
    assert page.status_code == 400
    assert b"top secret" not in page.content


# ---------------------------------------------------------------------- errors


def test_the_error_document_answers_with_the_errors_status(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client
) -> None:
    put(s3, site, "error.html", ERROR)
    page = get(web, webnode.site_host(site), "/no/such/page.html")
    assert (page.status_code, page.content) == (404, ERROR)
    assert page.headers["content-type"] == "text/html"
    assert page.headers["x-garage-error"] == "The specified key does not exist."


def test_without_an_error_document_errors_are_small_html_pages(
    webnode: WebNode, s3: Any, plain_site: str, web: httpx.Client
) -> None:
    page = get(web, webnode.site_host(plain_site), "/no/such/page.html")
    assert page.status_code == 404
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.content.startswith(b"<!DOCTYPE html>")
    assert b"404 Not Found" in page.content
    assert b"<?xml" not in page.content
    assert b"<Error>" not in page.content


def test_an_unreadable_error_document_falls_back_to_the_html_page(
    webnode: WebNode, site: str, web: httpx.Client
) -> None:
    page = get(web, webnode.site_host(site), "/missing.html")  # error.html was never put
    assert page.status_code == 404
    assert b"404 Not Found" in page.content


def test_no_directory_listing(webnode: WebNode, s3: Any, site: str, web: httpx.Client) -> None:
    put(s3, site, "files/report-2024.pdf", b"%PDF", content_type="application/pdf")
    put(s3, site, "files/photo.jpg", b"\xff\xd8", content_type="image/jpeg")
    host = webnode.site_host(site)
    for path in ("/files/", "/files", "/"):
        page = get(web, host, path)
        assert page.status_code == 404, path
        assert b"report-2024" not in page.content
        assert b"photo.jpg" not in page.content
    assert get(web, host, "/files/photo.jpg").content == b"\xff\xd8"


def test_a_deleted_object_is_gone(webnode: WebNode, s3: Any, site: str, web: httpx.Client) -> None:
    put(s3, site, "index.html", INDEX)
    put(s3, site, "dir/index.html", b"dir")
    host = webnode.site_host(site)
    assert get(web, host, "/").status_code == 200
    s3.delete_object(Bucket=site, Key="index.html")
    s3.delete_object(Bucket=site, Key="dir/index.html")
    assert get(web, host, "/").status_code == 404
    assert get(web, host, "/dir").status_code == 404  # no redirect to a deleted index


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_methods_other_than_get_head_options_are_refused(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client, method: str
) -> None:
    put(s3, site, "index.html", INDEX)
    host = webnode.site_host(site)
    answer = web.request(method, "/index.html", headers={"host": host}, content=b"overwrite")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD, OPTIONS"
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert s3.get_object(Bucket=site, Key="index.html")["Body"].read() == INDEX


def test_a_request_without_host_is_a_bad_request(webnode: WebNode) -> None:
    status, body = raw_request(webnode, b"GET / HTTP/1.0\r\n\r\n")
    assert status == 400
    assert b"Host" in body


# ---------------------------------------------------------------------- which site


def test_sites_by_root_domain_global_alias_and_host_with_port(
    webnode: WebNode, s3: Any, web: httpx.Client
) -> None:
    site = make_site(webnode, s3)
    put(s3, site, "index.html", INDEX)
    domain = f"www.{uuid.uuid4().hex[:8]}.example"
    garage_cli(webnode, "bucket", "alias", site, domain)
    for host in (
        webnode.site_host(site),
        webnode.site_host(site, port=True),
        webnode.site_host(site).upper(),
        site,  # the bucket's global name itself
        domain,
        f"{domain}:{webnode.web_port}",
        f"{domain}.",
    ):
        page = get(web, host, "/")
        assert (page.status_code, page.content) == (200, INDEX), host


def test_unknown_hosts_are_not_found(webnode: WebNode, web: httpx.Client) -> None:
    for host in ("nobody.web.test", "nobody.example", "127.0.0.1", "[::1]:80", "web.test"):
        page = get(web, host, "/")
        assert page.status_code == 404, host
        assert NO_SITE in page.content


def test_private_buckets_are_never_served(webnode: WebNode, s3: Any, web: httpx.Client) -> None:
    """Not a website, only a local alias, or a website no more: the same 404 as an unknown
    host, which says nothing of the bucket or its contents."""
    unknown = get(web, "nobody.web.test", "/").content

    private = global_bucket(webnode)
    put(s3, private, "index.html", b"private home")
    put(s3, private, "secret.txt", b"private data", content_type="text/plain")

    local_name = f"local-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=local_name)  # a local alias of the key: no global name
    s3.put_bucket_website(
        Bucket=local_name, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}}
    )
    put(s3, local_name, "index.html", b"local home")

    was_site = make_site(webnode, s3)
    put(s3, was_site, "index.html", b"former home")
    assert get(web, webnode.site_host(was_site), "/").content == b"former home"
    s3.delete_bucket_website(Bucket=was_site)

    for bucket in (private, local_name, was_site):
        for path in ("/", "/index.html", "/secret.txt"):
            page = get(web, webnode.site_host(bucket), path)
            assert (page.status_code, page.content) == (404, unknown), (bucket, path)
            assert web.head(path, headers={"host": bucket}).status_code == 404
        preflight = web.options(
            "/",
            headers={
                "host": bucket,
                "origin": "https://app.example",
                "access-control-request-method": "GET",
            },
        )
        assert preflight.status_code == 404


def test_website_access_through_the_cli(webnode: WebNode, s3: Any, web: httpx.Client) -> None:
    name = global_bucket(webnode)
    put(s3, name, "home.htm", b"cli home")
    put(s3, name, "oops.htm", b"cli error")
    host = webnode.site_host(name)
    assert get(web, host, "/").status_code == 404
    garage_cli(webnode, "bucket", "website", name, "--allow", "-i", "home.htm", "-e", "oops.htm")
    assert get(web, host, "/").content == b"cli home"
    assert (get(web, host, "/x").status_code, get(web, host, "/x").content) == (404, b"cli error")
    garage_cli(webnode, "bucket", "website", name, "--deny")
    assert get(web, host, "/").status_code == 404


# ---------------------------------------------------------------------- CORS

ORIGIN = "https://app.example"


@pytest.fixture
def cors_site(webnode: WebNode, s3: Any, site: str) -> str:
    s3.put_bucket_cors(
        Bucket=site,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [ORIGIN],
                    "AllowedMethods": ["GET", "HEAD"],
                    "AllowedHeaders": ["x-custom"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 600,
                }
            ]
        },
    )
    put(s3, site, "data.json", b"{}", content_type="application/json")
    return site


def test_cors_headers_for_a_matching_origin(
    webnode: WebNode, cors_site: str, web: httpx.Client
) -> None:
    host = webnode.site_host(cors_site)
    page = get(web, host, "/data.json", origin=ORIGIN)
    assert page.status_code == 200
    assert page.headers["access-control-allow-origin"] == ORIGIN
    assert page.headers["access-control-expose-headers"] == "ETag"
    assert "GET" in page.headers["access-control-allow-methods"]
    other = get(web, host, "/data.json", origin="https://evil.example")
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in get(web, host, "/data.json").headers


def test_cors_preflight_on_the_buckets_rules(
    webnode: WebNode, s3: Any, cors_site: str, web: httpx.Client
) -> None:
    host = webnode.site_host(cors_site)

    def preflight(origin: str, method: str, headers: str | None = None) -> httpx.Response:
        asked = {"host": host, "origin": origin, "access-control-request-method": method}
        if headers is not None:
            asked["access-control-request-headers"] = headers
        return web.options("/data.json", headers=asked)

    ok = preflight(ORIGIN, "GET", "x-custom")
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert ok.headers["access-control-allow-headers"] == "x-custom"
    assert ok.headers["access-control-max-age"] == "600"
    assert preflight("https://evil.example", "GET").status_code == 403
    assert preflight(ORIGIN, "PUT").status_code == 403
    assert preflight(ORIGIN, "GET", "x-other").status_code == 403
    no_origin = web.options("/data.json", headers={"host": host})
    assert no_origin.status_code == 400
    assert no_origin.content.startswith(b"<!DOCTYPE html>")
    # A site without CORS rules refuses every preflight.
    plain = make_site(webnode, s3)
    answer = web.options(
        "/", headers={"host": plain, "origin": ORIGIN, "access-control-request-method": "GET"}
    )
    assert answer.status_code == 403


# ---------------------------------------------------------------------- node


def test_requests_are_counted_by_method_and_site_host(
    webnode: WebNode, s3: Any, site: str, web: httpx.Client
) -> None:
    """``add_host_to_metrics``: the endpoint label names the site's host, and only hosts
    that are websites get a label of their own."""
    put(s3, site, "index.html", INDEX)
    host = webnode.site_host(site)
    for _ in range(3):
        assert get(web, host, "/").status_code == 200
    assert web.head("/", headers={"host": host}).status_code == 200
    invented = f"invented-{uuid.uuid4().hex[:8]}.web.test"
    assert get(web, invented, "/").status_code == 404
    scrape = httpx.get(f"{webnode.admin_url}/metrics", timeout=30)
    assert scrape.status_code == 200
    counts = {
        (sample.labels["endpoint"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(scrape.text)
        for sample in family.samples
        if sample.name == "api_requests_total" and sample.labels.get("api") == "web"
    }
    assert counts[(f"GET {host}", "200")] == 3
    assert counts[(f"HEAD {host}", "200")] == 1
    assert not any(invented in endpoint for endpoint, _status in counts)
    assert counts[("GET", "404")] >= 1


def test_the_quick_start_has_no_website_server(tmp_path: Path) -> None:
    """``garage server --single-node`` writes no ``[s3_web]`` section: no website server."""
    config = load_config(prepare_single_node(tmp_path / "node"))
    assert config.s3_web is None
