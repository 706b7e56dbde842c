import os

import numpy as np

from datamodules.cache import CaseArrays, PreprocessingCache
from datamodules.transforms import resize_images, resize_masks


def _arrays(n=3, size=8):
    rng = np.random.default_rng(0)
    masks = (rng.random((n, size, size)) > 0.7).astype(np.uint8)
    return CaseArrays(
        rng.random((n, size, size)).astype(np.float32), masks, [f"s{i}" for i in range(n)]
    )


def test_store_and_load_round_trip(tmp_path):
    source = tmp_path / "volume.bin"
    source.write_bytes(b"abc")
    cache = PreprocessingCache(tmp_path / "cache", "ct", {"window": [1500, -600]})
    key = cache.key([source])
    assert not cache.has(key)
    arrays = _arrays()
    cache.store(key, arrays, patient="p1")
    loaded = cache.load(key)
    assert isinstance(loaded.images, np.memmap)
    np.testing.assert_allclose(loaded.images, arrays.images, atol=1e-3)  # float16 storage
    np.testing.assert_array_equal(loaded.masks, arrays.masks)
    assert loaded.ids == arrays.ids and cache.index(key)["patient"] == "p1"


def test_key_changes_with_file_and_settings(tmp_path):
    source = tmp_path / "volume.bin"
    source.write_bytes(b"abc")
    cache = PreprocessingCache(tmp_path, "ct", {"image_size": 256})
    key = cache.key([source])
    assert cache.key([source]) == key
    assert PreprocessingCache(tmp_path, "ct", {"image_size": 128}).key([source]) != key
    assert cache.key([source], meta={"rle": "1 2"}) != key
    source.write_bytes(b"abcd")
    os.utime(source, ns=(1, 1))
    assert cache.key([source]) != key


def test_resize_masks_keeps_majority_and_binary():
    masks = np.zeros((1, 4, 4), np.uint8)
    masks[0, :2, :2] = 1  # one full 2x2 block
    masks[0, 2, 2] = 1  # a quarter of a block
    out = resize_masks(masks, 2)
    np.testing.assert_array_equal(out[0], [[1, 0], [0, 0]])


def test_resize_images_range_and_shape():
    images = np.random.default_rng(1).random((2, 64, 48)).astype(np.float32)
    out = resize_images(images, 32)
    assert out.shape == (2, 32, 32) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
