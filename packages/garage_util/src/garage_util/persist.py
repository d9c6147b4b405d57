"""Files that hold one value, replaced whole and atomically (Garage: src/util/persister.rs).

A node keeps a few small state files in ``metadata_dir`` (its key, the cluster layout, the
peer list). Each is rewritten whole on change. :func:`write_atomically` writes a temporary
file beside the target, fsyncs it, renames it over the target and fsyncs the directory, so
that after a crash at any point a reader finds the old content or the new, never a mix, and
a completed write survives power loss.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replaces ``path`` with ``data``: readers see the old file or the whole new one.

    Blocking file I/O: async code calls it through ``anyio.to_thread.run_sync``.

    Args:
        path: the file to write; its directory must exist.
        data: the new content.
        mode: permission bits of the new file (0600 by default: state files may be secret).
    """
    # A unique temporary name: concurrent writers of one path must not share it (one
    # rename would steal the other's file). The last rename wins, as with any file.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, mode)  # mkstemp creates 0600; set exactly the mode asked for
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
