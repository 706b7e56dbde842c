"""A cache writer for the two-process test, in its own light module: a spawned process
imports only this (numpy and the cache), not torch."""

from __future__ import annotations

import numpy as np

from datamodules.cache import CaseArrays, PreprocessingCache


def entry_arrays(key: str) -> CaseArrays:
    """The entry a writer builds for ``key``: 20 slices of 64 x 64, seeded by the key."""
    rng = np.random.default_rng(int(key, 16) % 1000)
    masks = (rng.random((20, 64, 64)) > 0.7).astype(np.uint8)
    return CaseArrays(rng.random((20, 64, 64)).astype(np.float32), masks, list("abcdefghij" * 2))


def writer(root: str, keys: list[str], out: str, start=None) -> None:
    """Build each entry unless valid, under the entry's lock; write how many it built.
    ``start`` (a multiprocessing barrier) makes both writers begin at the same moment."""
    cache = PreprocessingCache(root, "ct", {"s": 1})
    if start is not None:
        start.wait(timeout=60)
    built = 0
    for key in keys:
        if cache.problem(key, []) is not None:
            with cache.lock(key):
                if cache.problem(key, []) is not None:
                    cache.store(key, entry_arrays(key), [])
                    built += 1
    with open(out, "w") as fh:
        fh.write(str(built))
