"""Debian packages that some tests need (rclone, chromium, nftables, faketime...).

:func:`find_or_install` finds a program on ``PATH`` or installs its Debian package with
apt-get (as root, once per process and package); when that cannot work it returns the
reason, for a ``pytest.skip`` that says exactly what is missing.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import Final

__all__ = ["find_or_install"]

#: apt-get update + install of one package; generous for a slow mirror.
_APT_TIMEOUT_S: Final = 600


@functools.cache
def find_or_install(program: str, package: str | None = None) -> tuple[str | None, str]:
    """``program``'s path, installing Debian's ``package`` (default: the program's name)
    when it is missing; or ``None`` and the reason it is not available."""
    package = package or program
    found = shutil.which(program)
    if found is not None:
        return found, ""
    apt = shutil.which("apt-get")
    if apt is None:
        return None, f"{program} is not installed and there is no apt-get to install {package}"
    if os.geteuid() != 0:
        return None, f"{program} is not installed, and installing {package} needs root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [apt, "install", "-y", "--no-install-recommends", package]
    for argv in ([apt, "update"], install):
        try:
            proc = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=_APT_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"could not install {package} ({' '.join(argv)}): {exc}"
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, f"could not install {package} ({' '.join(argv)}): {' '.join(tail)}"
    found = shutil.which(program)
    if found is None:
        return None, f"apt-get installed {package} but {program} is not on PATH"
    return found, ""
