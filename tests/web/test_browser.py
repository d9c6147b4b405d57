"""A real browser loads a website from a bucket: headless Chromium (Debian's ``chromium``).

The site is an ``index.html`` with a stylesheet (a background colour, a hidden element)
and a PNG image made here with zlib and struct. Chromium resolves every host name to
127.0.0.1 only (``--host-resolver-rules``), so the site is reached by its virtual host
``<bucket>.web.test`` as a visitor would, and then:

- ``--dump-dom``: the page's own script wrote what the browser rendered into the DOM after
  ``load`` (the image's natural size, the computed background colour and ``display`` of
  the hidden element), which only happens if the CSS and the image were served right, and
  what a ``fetch`` of a folder without its slash got (the 302 followed to its index);
- ``--screenshot``: the PNG (decoded here) has the stylesheet's background colour and the
  image's colour where the page puts them.

Skipped, with the reason, when Chromium is missing and cannot be installed.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from typing import TYPE_CHECKING, Any, Final

import pytest
from tests.debian import find_or_install
from tests.web.conftest import make_site

if TYPE_CHECKING:
    from pathlib import Path

    from tests.web.conftest import WebNode

#: The stylesheet's background colour and the image's colour (RGB).
BACKGROUND: Final = (0, 128, 255)
IMAGE_COLOUR: Final = (220, 20, 60)
IMAGE_SIZE: Final = (37, 23)
WINDOW: Final = (400, 300)

INDEX_HTML: Final = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Garage site</title>
<link rel="stylesheet" href="style.css"></head>
<body>
<h1 id="title">Served by Garage</h1>
<p id="hidden" class="hide-me">this paragraph is hidden by style.css</p>
<img id="logo" src="img/logo.png" alt="logo">
<pre id="report">pending</pre>
<pre id="folder">pending</pre>
<script>
window.addEventListener("load", function () {
  var img = document.getElementById("logo");
  var hidden = document.getElementById("hidden");
  document.getElementById("report").textContent =
    "image=" + img.naturalWidth + "x" + img.naturalHeight +
    ";background=" + getComputedStyle(document.body).backgroundColor +
    ";hidden=" + getComputedStyle(hidden).display;
});
// A folder without its slash: the browser follows the 302 to the folder's index.
fetch("docs").then(function (r) {
  return r.text().then(function (t) {
    document.getElementById("folder").textContent =
      r.status + " " + new URL(r.url).pathname + " " + r.redirected + " " + t;
  });
});
</script>
</body></html>
"""

STYLE_CSS: Final = (
    f"body {{ background-color: rgb{BACKGROUND}; margin: 0; }}\n"
    ".hide-me { display: none; }\n"
    "#logo { position: absolute; left: 300px; top: 200px; width: 74px; height: 46px; }\n"
)


def make_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour 8-bit RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def decode_png(data: bytes) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """Width, height and RGB rows of an 8-bit RGB or RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0), "only 8-bit non-interlaced PNGs"
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        filter_type, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + pred) & 0xFF
        offsets = range(0, stride, channels)
        rows.append([(line[i], line[i + 1], line[i + 2]) for i in offsets])
        previous = line
    return width, height, rows


def test_png_round_trip() -> None:
    width, height, rows = decode_png(make_png(5, 3, (1, 2, 3)))
    assert (width, height) == (5, 3)
    assert all(pixel == (1, 2, 3) for row in rows for pixel in row)


@pytest.fixture(scope="module")
def chromium() -> str:
    path, reason = find_or_install("chromium")
    if path is None:
        pytest.skip(reason)
    return path


def run_chromium(chromium: str, profile: Path, port: int, *args: str) -> str:
    """Runs headless Chromium with every host resolving to 127.0.0.1, with a fresh profile
    in ``profile`` (removed afterwards); its stdout."""
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * 127.0.0.1",
        f"--explicitly-allowed-ports={port}",
        # Wait until the page is idle (scripts run, images decoded) before dumping.
        "--virtual-time-budget=10000",
        *args,
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_chromium_renders_a_site_with_its_css_and_image(
    webnode: WebNode, s3: Any, chromium: str, tmp_path: Path
) -> None:
    site = make_site(webnode, s3)
    s3.put_object(Bucket=site, Key="index.html", Body=INDEX_HTML.encode(), ContentType="text/html")
    s3.put_object(Bucket=site, Key="style.css", Body=STYLE_CSS.encode(), ContentType="text/css")
    png = make_png(*IMAGE_SIZE, IMAGE_COLOUR)
    s3.put_object(Bucket=site, Key="img/logo.png", Body=png, ContentType="image/png")
    s3.put_object(Bucket=site, Key="docs/index.html", Body=b"Docs folder")
    url = f"http://{webnode.site_host(site, port=True)}/"

    dom = run_chromium(chromium, tmp_path / "profile-dom", webnode.web_port, "--dump-dom", url)
    report = re.search(r'<pre id="report">([^<]*)</pre>', dom)
    assert report is not None, dom
    (width, height), (r, g, b) = IMAGE_SIZE, BACKGROUND
    assert report.group(1) == f"image={width}x{height};background=rgb({r}, {g}, {b});hidden=none"
    assert "Served by Garage" in dom
    folder = re.search(r'<pre id="folder">([^<]*)</pre>', dom)
    assert folder is not None, dom
    assert folder.group(1) == "200 /docs/ true Docs folder"

    shot = tmp_path / "shot.png"
    run_chromium(
        chromium,
        tmp_path / "profile-shot",
        webnode.web_port,
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        url,
    )
    shot_width, shot_height, rows = decode_png(shot.read_bytes())
    assert (shot_width, shot_height) == WINDOW
    pixels = [pixel for row in rows for pixel in row]
    background = sum(1 for p in pixels if p == BACKGROUND)
    assert background > len(pixels) // 2, "the stylesheet's background colour fills the page"
    # The image, scaled to 74x46 CSS pixels at (300, 200): its colour is there.
    assert rows[200 + 23][300 + 37] == IMAGE_COLOUR
    assert sum(1 for p in pixels if p == IMAGE_COLOUR) >= 70 * 40
