"""Each layer builds and installs alone, without the layers above it.

An embedder installs ``garage-table`` (and with it ``garage-rpc`` and ``garage-util``) in
their own app without the S3 server. This builds the wheels with uv, installs them in a
fresh virtualenv with only their declared dependencies (fetched from the package index),
and checks that they import and that no upper layer came along.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom to top, from the import-linter contract in pyproject.toml (one source of truth).
LAYERS: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
][0]["layers"][::-1]


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed: run the suite with `uv run nox -s tests`")
    return uv


@pytest.mark.parametrize(
    ("top", "wheels"),
    [
        ("garage_util", ["garage-util"]),
        ("garage_table", ["garage-util", "garage-rpc", "garage-table"]),
    ],
)
def test_wheel_installs_and_imports_without_upper_layers(
    tmp_path: Path, top: str, wheels: list[str]
) -> None:
    uv = _uv()
    dist = tmp_path / "dist"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    for name in wheels:
        subprocess.run(
            [uv, "build", "--quiet", "--package", name, "--wheel", "--out-dir", str(dist)],
            cwd=ROOT, env=env, check=True,
        )  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", "3.11", str(venv)], env=env, check=True)
    python = venv / "bin" / "python"
    built = sorted(str(p) for p in dist.glob("*.whl"))
    assert len(built) == len(wheels)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), *built],
        env=env, check=True,
    )  # fmt: skip
    rank = LAYERS.index(top)
    script = (
        "import importlib, importlib.util, sys\n"
        f"importlib.import_module({top!r})\n"
        f"uppers = {LAYERS[rank + 1 :]!r}\n"
        "present = [u for u in uppers if importlib.util.find_spec(u) is not None]\n"
        "assert not present, present\n"
        "print('ok', sorted(m for m in sys.modules if m.startswith('garage')))\n"
    )
    out = subprocess.run(
        [str(python), "-c", script], cwd=tmp_path, env=env, check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.stdout.startswith("ok")
    assert top in out.stdout
