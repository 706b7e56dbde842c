"""Non-identifying keys for patients and images.

Folder names, PatientID and similar values may be identifiers; everything the framework
writes (ids, logs, cache files, run records, W&B) uses a salted hash of them instead.
Set ``PTX_ID_SALT`` to a secret of your site to make the keys unlinkable outside it.
"""

from __future__ import annotations

import hashlib
import os

DEFAULT_SALT = "ptx-seg"


def anonymous_key(value: str, prefix: str = "p", length: int = 12) -> str:
    """A stable, salted, non-reversible key for ``value`` (e.g. ``p3f9a0c21d4e7``)."""
    salt = os.environ.get("PTX_ID_SALT", DEFAULT_SALT)
    digest = hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()
    return f"{prefix}{digest[:length]}"
