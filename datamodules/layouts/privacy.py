"""Non-identifying keys for patients and images, keyed by a secret of the site.

Folder names, PatientID and similar values may be identifiers; everything the framework
writes (ids, logs, cache files, run records, W&B) uses ``anonymous_key`` of them instead:
HMAC-SHA-256 under a per-site secret, so a key cannot be reversed by hashing every possible
MRN (10^8 candidates take seconds) without the secret. The secret is ``$PTX_ID_SALT`` when
set, else the file ``id_secret`` in the cache folder (``datamodules.cache.default_cache_dir``:
``$PTX_CACHE_DIR``, else ``$XDG_CACHE_HOME/ptx`` or ``~/.cache/ptx``), 32 random bytes written
once with owner-only permissions (0600) at first use. The Makefile used to keep the cache in
the checkout (``.cache/ptx``); a new secret made while such an old one exists says so.

Keys made under different secrets do not match, so a run records ``id_fingerprint()`` (8 hex
digits of HMAC(secret, "ptx-fingerprint"), which says nothing about the secret) and sweeps
refuse to mix runs of different fingerprints in one table.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from datamodules.cache import default_cache_dir
from datamodules.io.atomic import write_text_atomic

log = logging.getLogger("ptx.data.privacy")

LEGACY_SALT = "ptx-seg"  # the public salt of versions before the per-site secret
CHECKOUT_CACHE = Path(".cache") / "ptx"  # where `make` used to keep the cache
SECRET_FILE = "id_secret"
ENV = "PTX_ID_SALT"


def secret_path() -> Path:
    """Where the site's secret lives when ``$PTX_ID_SALT`` is not set."""
    return default_cache_dir() / SECRET_FILE


def id_secret() -> bytes:
    """The site's secret: ``$PTX_ID_SALT``, else the secret file (created at first use)."""
    if os.environ.get(ENV):
        return _from_env(os.environ[ENV])
    return _from_file(secret_path())


@functools.lru_cache(maxsize=8)
def _from_env(value: str) -> bytes:
    if value == LEGACY_SALT:
        log.warning(
            "%s is the old public default %r: patient keys can be reversed by anyone; unset it "
            "(a random secret is then made) or set a secret of your own",
            ENV,
            LEGACY_SALT,
        )
    return value.encode()


@functools.lru_cache(maxsize=8)
def _from_file(path: Path) -> bytes:
    if not path.exists():
        _create_secret(path)
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; make it private: chmod 600 %s", path, path)
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"{path} is empty: delete it (a new secret is made) or restore it")
    return value.encode()


def _create_secret(path: Path) -> None:
    legacy_cache = path.parent / "preprocessed"
    try:  # the first of several processes wins; the others read its secret
        write_text_atomic(path, secrets.token_hex(32) + "\n", overwrite=False, permissions=0o600)
    except FileExistsError:
        return
    log.info("made a new identifier secret in %s (owner-only); keep it to keep keys stable", path)
    old = checkout_secret(path)
    if old is not None:
        log.warning(
            "an identifier secret made by an earlier `make` is in %s, but the cache is now %s "
            "for make and ptx alike: patient keys made with the old secret (earlier runs and "
            "split files) do not match those of the new one. To keep the old keys, stop and "
            "mv %s %s, or set PTX_CACHE_DIR=%s to keep using the old cache",
            old,
            path.parent,
            old,
            path,
            old.parent,
        )
    if legacy_cache.is_dir() and any(legacy_cache.iterdir()):
        log.warning(
            "the preprocessing cache in %s was built with the old public salt %r: patient "
            "keys change with the new secret, so cases are decoded again and earlier runs and "
            "split files (which use the old keys) do not match new ones; set %s=%s to keep "
            "the old keys (they are reversible), or rerun",
            legacy_cache,
            LEGACY_SALT,
            ENV,
            LEGACY_SALT,
        )


def checkout_secret(path: Path) -> Path | None:
    """The secret an earlier ``make`` kept in the checkout (``.cache/ptx/id_secret`` under the
    working folder or the project's), when ``path`` is the default location and not it."""
    if os.environ.get("PTX_CACHE_DIR"):
        return None
    here = Path(__file__).resolve().parents
    project = [p for p in here if (p / "pyproject.toml").is_file()][:1]  # an editable install
    for root in (Path.cwd(), *project):
        old = root / CHECKOUT_CACHE / SECRET_FILE
        if old.is_file() and old.resolve() != path.resolve():
            return old
    return None


def anonymous_key(value: str, prefix: str = "p", length: int = 12) -> str:
    """A stable, keyed, non-reversible key for ``value`` (e.g. ``p3f9a0c21d4e7``)."""
    code = hmac.new(id_secret(), value.encode(), hashlib.sha256).hexdigest()
    return f"{prefix}{code[:length]}"


def image_key(image_id: str) -> str:
    """The key of a radiograph whose id is ``image_id`` (its file stem: a SOP Instance UID,
    an accession number or a name, whatever the site exported), e.g. ``i5b0e7f21c9d3``: what
    records, logs, W&B and ``ptx predict``'s file names carry instead of the id."""
    return anonymous_key(f"radiograph:{image_id}", prefix="i")


def id_fingerprint(secret: bytes | None = None) -> str:
    """8 hex digits that tell secrets apart without revealing them (recorded in runs)."""
    key = id_secret() if secret is None else secret
    return hmac.new(key, b"ptx-fingerprint", hashlib.sha256).hexdigest()[:8]
