"""The pure routing of garage_web: Host → bucket name, path → key, error pages."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_api.s3 import MAX_KEY_BYTES
from garage_web import (
    ImplicitRedirect,
    WebError,
    WebTarget,
    authority_to_host,
    error_page,
    host_to_bucket_name,
    path_to_keys,
)

INDEX = "index.html"

# Object keys: any text, including "/", "..", "\\", "%", spaces and non-ASCII.
keys = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60).filter(
    lambda k: len(k.encode()) <= MAX_KEY_BYTES - len(INDEX) - 1
)


@pytest.mark.parametrize(
    ("authority", "host"),
    [
        ("example.com", "example.com"),
        ("Example.COM:3902", "example.com"),
        ("blog.web.test.", "blog.web.test"),
        ("blog.web.test.:80", "blog.web.test"),
        ("[::1]:3902", "[::1]"),
        ("[::1]", "[::1]"),
        ("127.0.0.1:80", "127.0.0.1"),
    ],
)
def test_authority_to_host_strips_the_port_and_lowercases(authority: str, host: str) -> None:
    assert authority_to_host(authority) == host


@pytest.mark.parametrize("authority", ["", ":80", "[::1", "[::1]x", "[::1]80", "."])
def test_malformed_hosts_are_bad_requests(authority: str) -> None:
    with pytest.raises(WebError) as info:
        authority_to_host(authority)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("host", "root", "bucket"),
    [
        ("blog.web.test", "web.test", "blog"),
        ("blog.web.test", ".web.test", "blog"),
        ("john.doe.web.test", "web.test", "john.doe"),
        ("www.example.com", "web.test", "www.example.com"),  # a global alias
        ("web.test", "web.test", "web.test"),  # the root itself: a name like any other
        ("notweb.test", "web.test", "notweb.test"),  # label-wise, not a suffix match
    ],
)
def test_host_to_bucket_name(host: str, root: str, bucket: str) -> None:
    assert host_to_bucket_name(host, root) == bucket


def test_index_documents_and_implicit_redirects() -> None:
    assert path_to_keys("/", INDEX) == WebTarget(INDEX)
    assert path_to_keys("/%20t/", INDEX) == WebTarget(" t/index.html")
    assert path_to_keys("/file%20.jpg", INDEX) == WebTarget(
        "file .jpg", ImplicitRedirect("file .jpg/index.html", "/file%20.jpg/")
    )
    assert path_to_keys("/a/b", INDEX) == WebTarget(
        "a/b", ImplicitRedirect("a/b/index.html", "/a/b/")
    )
    # "+" is a plus in a path (S3 keys are not form-encoded).
    assert path_to_keys("/a+b.html", INDEX).key == "a+b.html"


@pytest.mark.parametrize("path", ["", "index.html", "*", "%2Findex.html"])
def test_a_path_must_start_with_a_slash(path: str) -> None:
    with pytest.raises(WebError) as info:
        path_to_keys(path, INDEX)
    assert info.value.status == 400


def test_invalid_utf8_is_a_bad_request() -> None:
    with pytest.raises(WebError) as info:
        path_to_keys("/%FF.html", INDEX)
    assert info.value.status == 400


def test_keys_over_s3s_limit_are_not_found_and_never_redirect() -> None:
    with pytest.raises(WebError) as info:
        path_to_keys("/" + "a" * (MAX_KEY_BYTES + 1), INDEX)
    assert info.value.status == 404
    # The key fits but "<key>/index.html" would not: no redirect to look for.
    assert path_to_keys("/" + "a" * MAX_KEY_BYTES, INDEX).redirect is None


@given(keys)
def test_a_path_names_its_percent_decoded_key(key: str) -> None:
    target = path_to_keys("/" + quote(key, safe="/"), INDEX)
    if key.endswith("/"):
        assert target == WebTarget(key + INDEX)
    else:
        assert target.key == key
        assert target.redirect is not None
        assert target.redirect.key == f"{key}/{INDEX}"


@given(keys.filter(lambda k: not k.endswith("/")))
def test_redirect_locations_stay_on_the_site_and_decode_to_the_folder(key: str) -> None:
    redirect = path_to_keys("/" + quote(key, safe="/"), INDEX).redirect
    assert redirect is not None
    location = redirect.location
    # One leading slash and no backslash: never "//host" nor "/\\host" (another site).
    assert location.startswith("/")
    assert not location.startswith("//")
    assert "\\" not in location
    assert all(33 <= ord(c) < 127 for c in location), "a header value is printable ASCII"
    assert unquote(location) == f"/{key}/"
    # Following the redirect names the folder's index document.
    assert path_to_keys(location, INDEX) == WebTarget(f"{key}/{INDEX}")


@given(st.text(max_size=200), st.sampled_from([400, 403, 404, 405, 416, 500, 503, 599]))
def test_error_pages_escape_the_message(message: str, status: int) -> None:
    page = error_page(status, message).decode()
    assert page.startswith("<!DOCTYPE html>")
    assert f"<h1>{status} " in page
    body = page.split("<p>", 1)[1]
    assert "<script" not in body.split("</p>", 1)[0]
    assert "<" not in body.split("</p>", 1)[0]


def test_405_says_which_methods_are_allowed() -> None:
    error = WebError.method_not_allowed("POST")
    assert error.status == 405
    assert ("allow", "GET, HEAD, OPTIONS") in error.headers
    assert not WebError(503, "down").is_client_error
    assert WebError.not_found().is_client_error
