"""Secrets: where each one comes from, secret files and their modes, and ``rpc_secret``.

``rpc_secret``, ``admin.admin_token`` and ``admin.metrics_token`` may each be given inline
or as a file (``X`` or ``X_file``), in three places. The first place that gives one wins:
command line (:class:`SecretOverrides`) > environment (``GARAGE_RPC_SECRET``,
``GARAGE_RPC_SECRET_FILE``...) > configuration file. Giving both ``X`` and ``X_file`` in one
place is an error, even in a place that loses; empty environment variables count as unset.
``allow_world_readable_secrets`` has the same precedence, and decides whether a secret file
whose mode lets group or others in is refused. The environment is only ever the mapping
passed in, never ``os.environ``, and no error message echoes a secret.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from garage_util.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._model import SecretOverrides
    from ._reader import TableReader

__all__ = [
    "ResolvedSecrets",
    "parse_rpc_secret",
    "resolve_allow_world_readable",
    "resolve_secrets",
]

# rpc_secret is the 32-byte network key of the secret handshake (§2.2), 64 hex digits.
_RPC_SECRET_BYTES: Final = 32
# Hex digits of exact length. ASCII only, so that no exotic Unicode digit reaches
# bytes.fromhex.
_RPC_SECRET_RE: Final = re.compile(f"[0-9a-fA-F]{{{2 * _RPC_SECRET_BYTES}}}", re.ASCII)
# Permission bits that let group or others read (or write) a file: `chmod 600` clears them.
_NOT_OWNER_ONLY_BITS: Final = 0o077
# Spellings of booleans accepted in GARAGE_ALLOW_WORLD_READABLE_SECRETS: the usual ones of
# environment variables (Garage's own parser takes only true/false; "1" is too common to refuse).
_TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedSecrets:
    """The three secrets as found (not yet checked for shape); ``None``: given nowhere."""

    rpc_secret: str | None = field(repr=False)
    admin_token: str | None = field(repr=False)
    metrics_token: str | None = field(repr=False)


def _env_bool(env: Mapping[str, str], name: str) -> bool | None:
    text = env.get(name, "").strip().lower()
    if not text:
        return None
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    raise ConfigError("allow_world_readable_secrets", f"{name} must be true or false, got {text!r}")


def resolve_allow_world_readable(
    root: TableReader, *, env: Mapping[str, str], overrides: SecretOverrides
) -> bool:
    """``allow_world_readable_secrets``: command line, else environment, else file."""
    allow_world_readable = overrides.allow_world_readable_secrets
    if allow_world_readable is None:
        allow_world_readable = _env_bool(env, "GARAGE_ALLOW_WORLD_READABLE_SECRETS")
    if allow_world_readable is None:
        allow_world_readable = root.bool_("allow_world_readable_secrets")
    return allow_world_readable


def _read_secret_file(key: str, path: Path, *, allow_world_readable: bool) -> str:
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and not allow_world_readable and mode & _NOT_OWNER_ONLY_BITS:
            raise ConfigError(
                key,
                f"secret file {path} has mode {stat.S_IMODE(mode):04o}, readable by other "
                f"users: run `chmod 600 {path}`, or set allow_world_readable_secrets = true",
            )
        secret = path.read_text(encoding="utf-8").rstrip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read secret file {path}: {exc}") from None
    if not secret:
        raise ConfigError(key, f"secret file {path} is empty")
    return secret


def _resolve_secret(
    table: TableReader,
    name: str,
    *,
    env: Mapping[str, str],
    cli: tuple[str | None, str | os.PathLike[str] | None],
    allow_world_readable: bool,
) -> str | None:
    """The secret ``name`` of ``table``: command line, else environment, else file."""
    key = table.key(name)
    flag = "--" + name.replace("_", "-")
    env_name = f"GARAGE_{name.upper()}"
    env_value, env_path = env.get(env_name) or None, env.get(f"{env_name}_FILE") or None
    # (inline value, file, how to name them), in precedence order. Empty env vars are unset.
    sources = (
        (cli[0], None if cli[1] is None else Path(cli[1]), (flag, f"{flag}-file")),
        (env_value, None if env_path is None else Path(env_path), (env_name, f"{env_name}_FILE")),
        (table.opt_str(name), table.opt_path(f"{name}_file"), (key, f"{key}_file")),
    )
    for value, path, (value_name, path_name) in sources:
        if value is not None and path is not None:
            raise ConfigError(key, f"{value_name} and {path_name} are both set; give only one")
    for value, path, (value_name, _) in sources:
        if value is not None:
            if not value.strip():
                raise ConfigError(key, f"{value_name} is empty")
            return value
        if path is not None:
            return _read_secret_file(key, path, allow_world_readable=allow_world_readable)
    return None


def resolve_secrets(
    root: TableReader,
    admin: TableReader,
    *,
    env: Mapping[str, str],
    overrides: SecretOverrides,
    allow_world_readable: bool,
) -> ResolvedSecrets:
    """Finds ``rpc_secret`` in ``root`` and the tokens in ``admin``, in that order."""
    return ResolvedSecrets(
        rpc_secret=_resolve_secret(
            root,
            "rpc_secret",
            env=env,
            cli=(overrides.rpc_secret, overrides.rpc_secret_file),
            allow_world_readable=allow_world_readable,
        ),
        admin_token=_resolve_secret(
            admin,
            "admin_token",
            env=env,
            cli=(overrides.admin_token, overrides.admin_token_file),
            allow_world_readable=allow_world_readable,
        ),
        metrics_token=_resolve_secret(
            admin,
            "metrics_token",
            env=env,
            cli=(overrides.metrics_token, overrides.metrics_token_file),
            allow_world_readable=allow_world_readable,
        ),
    )


def parse_rpc_secret(text: str | None) -> bytes:
    """The 32-byte ``rpc_secret`` from its 64 hex digits; never echoes it in an error."""
    if text is None:
        raise ConfigError(
            "rpc_secret",
            "is required: set rpc_secret or rpc_secret_file in the configuration file, "
            "GARAGE_RPC_SECRET or GARAGE_RPC_SECRET_FILE in the environment, or pass "
            "--rpc-secret or --rpc-secret-file",
        )
    text = text.strip()
    if _RPC_SECRET_RE.fullmatch(text) is None:
        # Never echo the secret: say only what shape it has.
        raise ConfigError(
            "rpc_secret",
            f"must be {2 * _RPC_SECRET_BYTES} hex digits ({_RPC_SECRET_BYTES} bytes, e.g. from "
            f"`openssl rand -hex 32`), got {len(text)} characters",
        )
    return bytes.fromhex(text)
