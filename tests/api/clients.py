"""Real S3 clients driven against a test node: awscli, s3cmd and rclone as subprocesses.

Each client gets a private environment: its credentials and settings live in files under
the test's temporary directory (``HOME`` points there too), and every inherited ``AWS_*``,
``RCLONE_*`` and proxy variable is dropped, so neither the user's configuration nor the
machine's (``AWS_CA_BUNDLE`` breaks Debian's rclone even over plain http) leaks in. The only
address any client talks to is the node's, on 127.0.0.1.

awscli and s3cmd are dev dependencies (installed in the virtualenv beside the interpreter);
rclone comes from Debian: :func:`find_or_install_rclone` installs it with apt-get when it is
missing and we are root, and says why when it cannot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.api.conftest import S3Node
from tests.debian import find_or_install

__all__ = [
    "BIN",
    "PYCACHE",
    "Aws",
    "ClientError",
    "Rclone",
    "S3cmd",
    "client_env",
    "find_or_install_rclone",
    "tree_files",
    "write_tree",
]

#: Where the virtualenv's console scripts (aws, s3cmd) are.
BIN = Path(sys.executable).parent

#: One client command never takes this long against a local node; a hang fails the test.
COMMAND_TIMEOUT_S = 600

#: Bytecode cache of the Python clients (awscli, s3cmd), kept across runs: the environment may
#: set PYTHONDONTWRITEBYTECODE, and then each awscli command spends a second compiling botocore.
PYCACHE = Path(tempfile.gettempdir()) / f"garage-tests-client-pycache-{os.getuid()}"

#: Inherited variables that would change how a client behaves or where it connects.
_DROPPED_PREFIXES = ("AWS_", "RCLONE_", "S3CMD", "BOTO_", "MC_")
_DROPPED = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "pythondontwritebytecode"}


class ClientError(AssertionError):
    """A client command exited with an unexpected status."""


def client_env(home: Path) -> dict[str, str]:
    """The process environment for a client whose home (and config files) is ``home``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_DROPPED_PREFIXES) and name.lower() not in _DROPPED
    }
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env["NO_PROXY"] = "127.0.0.1"
    env["TZ"] = "UTC"  # listings print local times
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def _run(
    argv: list[str], env: dict[str, str], *, expect: int | None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a client command; fails with its output unless it exits with ``expect``.

    ``expect=None`` accepts any status (the caller inspects it).
    """
    proc = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if expect is not None and proc.returncode != expect:
        raise ClientError(
            f"{' '.join(argv)!r} exited {proc.returncode} (expected {expect})\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


@dataclass(frozen=True, slots=True)
class Aws:
    """awscli against the node, with credentials and region from files in ``home``."""

    node: S3Node
    home: Path

    @classmethod
    def configure(cls, node: S3Node, home: Path) -> Aws:
        """Writes the shared credentials and config files; returns the configured client."""
        home.mkdir(parents=True, exist_ok=True)
        (home / "aws-credentials").write_text(
            f"[default]\naws_access_key_id = {node.key_id}\naws_secret_access_key = {node.secret}\n"
        )
        # One attempt: a retried request would hide a server error (and BadDigest is retried).
        (home / "aws-config").write_text(
            f"[default]\nregion = {node.region}\nmax_attempts = 1\nretry_mode = standard\n"
        )
        return cls(node, home)

    def env(self) -> dict[str, str]:
        """The environment: the files above, and no instance-metadata lookups."""
        env = client_env(self.home)
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.home / "aws-credentials")
        env["AWS_CONFIG_FILE"] = str(self.home / "aws-config")
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        env["AWS_PAGER"] = ""
        return env

    def run(
        self, *args: str, expect: int | None = 0, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``aws --endpoint-url <node> ARGS``."""
        argv = [str(BIN / "aws"), "--endpoint-url", self.node.endpoint, *args]
        return _run(argv, self.env(), expect=expect, cwd=cwd)

    def s3(self, *args: str, cwd: Path | None = None) -> list[str]:
        """``aws s3 ARGS`` without progress output; returns its output lines."""
        extra = ["--no-progress"] if args[0] in {"cp", "mv", "sync"} else []
        out = self.run("s3", *args, *extra, cwd=cwd).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def s3api(self, *args: str) -> Any:
        """``aws s3api ARGS --output json``; returns the decoded answer (None when empty)."""
        out = self.run("s3api", *args, "--output", "json").stdout
        return json.loads(out) if out.strip() else None


@dataclass(frozen=True, slots=True)
class S3cmd:
    """s3cmd against the node, with a config file in ``home``."""

    node: S3Node
    home: Path

    @classmethod
    def configure(cls, node: S3Node, home: Path) -> S3cmd:
        """Writes the config file (path-style on the node's address, SigV4, plain http)."""
        home.mkdir(parents=True, exist_ok=True)
        host = node.endpoint.removeprefix("http://")
        (home / "s3cfg").write_text(
            "[default]\n"
            f"access_key = {node.key_id}\n"
            f"secret_key = {node.secret}\n"
            f"host_base = {host}\n"
            f"host_bucket = {host}\n"
            "use_https = False\n"
            "signature_v2 = False\n"
            f"bucket_location = {node.region}\n"
            "check_ssl_certificate = False\n"
            "progress_meter = False\n"
        )
        return cls(node, home)

    def run(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        """``s3cmd -c <config> ARGS``."""
        argv = [str(BIN / "s3cmd"), "-c", str(self.home / "s3cfg"), *args]
        return _run(argv, client_env(self.home), expect=expect)

    def lines(self, *args: str) -> list[str]:
        """The non-empty output lines of ``s3cmd ARGS``."""
        out = self.run(*args).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class Rclone:
    """rclone with one s3 remote, ``garage:``, configured in ``home``."""

    exe: str
    node: S3Node
    home: Path

    #: Parts of 5 MiB (S3's minimum) from 5 MiB on, so a >10 MiB file goes multipart.
    CHUNK = "5Mi"

    @classmethod
    def configure(cls, exe: str, node: S3Node, home: Path) -> Rclone:
        """Writes the rclone config: provider Other, the node's endpoint, path style."""
        home.mkdir(parents=True, exist_ok=True)
        (home / "rclone.conf").write_text(
            "[garage]\n"
            "type = s3\n"
            "provider = Other\n"
            "env_auth = false\n"
            f"access_key_id = {node.key_id}\n"
            f"secret_access_key = {node.secret}\n"
            f"endpoint = {node.endpoint}\n"
            f"region = {node.region}\n"
            "force_path_style = true\n"
            f"upload_cutoff = {cls.CHUNK}\n"
            f"chunk_size = {cls.CHUNK}\n"
        )
        return cls(exe, node, home)

    def run(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        """``rclone ARGS`` with ``RCLONE_CONFIG`` pointing at our file."""
        env = client_env(self.home)
        env["RCLONE_CONFIG"] = str(self.home / "rclone.conf")
        return _run([self.exe, *args], env, expect=expect)

    def lines(self, *args: str) -> list[str]:
        """The non-empty output lines of ``rclone ARGS``."""
        return [line.strip() for line in self.run(*args).stdout.splitlines() if line.strip()]


def find_or_install_rclone() -> tuple[str | None, str]:
    """rclone's path, installing Debian's package when missing; or None and the reason."""
    return find_or_install("rclone")


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Writes ``files`` (relative posix path -> content) under ``root``."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root``: relative posix path -> content."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
