"""Atomic file writes: a reader sees the old file or the new one, never a torn mixture.

Each writer fills a temporary file in the target's own folder (same file system, so the
final rename is atomic), flushes it to disk and renames it over the target with
:func:`os.replace`. A writer killed half-way leaves only a ``.<name>.tmp-*`` file, which
never has the target's name; concurrent writers (runs, DDP ranks, DataLoader workers) each
rename a complete file, so the last one wins. With ``overwrite=False`` the file is created
only if absent (:func:`os.link`, which fails when the name exists): the first writer wins
and the others get :class:`FileExistsError`, e.g. for a secret two processes create at once.

    with atomic_write(path) as fh:          # text
        fh.write("...")
    with atomic_write(path, "wb") as fh:    # bytes, or a callback writing into fh
        np.save(fh, array)
    write_text_atomic(path, text); write_bytes_atomic(path, data)
    with atomic_dir(folder) as tmp:         # a whole folder (e.g. a generated phantom)
        ...

Every rename goes through :func:`_publish`, the one place a name is switched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def _publish(tmp: str | Path, path: str | Path) -> None:
    """Give the complete ``tmp`` the name ``path`` in one step (same file system)."""
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; on success it becomes ``path``.

    If another process published ``path`` first (the rename finds it non-empty), its folder
    is kept and ours removed. An exception inside the ``with`` block removes ours.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        try:
            _publish(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another writer was first: keep theirs
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | Path,
    mode: str = "w",
    *,
    overwrite: bool = True,
    permissions: int | None = None,
    encoding: str | None = "utf-8",
    durable: bool = True,
) -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces (or creates) ``path``.

    Args:
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        overwrite: False creates ``path`` only if it does not exist (else FileExistsError).
        permissions: e.g. ``0o600``; the file has them before it gets its name.
        encoding: text encoding (ignored for binary).
        durable: fsync the data before the rename, so a power cut cannot leave the new
            name on empty blocks (False for files that carry their own checksum).

    An exception inside the ``with`` block removes the temporary file and leaves ``path``
    untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        if permissions is not None:
            os.chmod(tmp, permissions)
        kwargs = {"encoding": encoding, "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if durable:  # the data is on disk before the name points at it
                os.fsync(fh.fileno())
        if overwrite:
            _publish(tmp, path)
        else:
            os.link(tmp, path)  # raises FileExistsError if another writer was first
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, **options) -> Path:
    """Write ``data`` to ``path`` atomically (options as :func:`atomic_write`)."""
    with atomic_write(path, "wb", **options) as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, **options) -> Path:
    """Write ``text`` to ``path`` atomically (options as :func:`atomic_write`)."""
    with atomic_write(path, "w", **options) as fh:
        fh.write(text)
    return Path(path)


def write_with_atomic(path: str | Path, writer: Callable[[IO[bytes]], object], **options) -> Path:
    """Call ``writer(fh)`` on an open binary file that atomically becomes ``path``
    (e.g. ``lambda fh: np.save(fh, array)``)."""
    with atomic_write(path, "wb", **options) as fh:
        writer(fh)
    return Path(path)
