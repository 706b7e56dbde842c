"""The preprocessing cache: round trips, stale / torn / corrupted entries detected and rebuilt
(never served), concurrent writers, atomic writes."""

from __future__ import annotations

import logging
import multiprocessing
import os

import numpy as np
import pytest
from cache_writer import entry_arrays, writer
from ct_fixtures import nifti_patient

from datamodules import CTDataModule
from datamodules.cache import CaseArrays, PreprocessingCache, decode_images, encode_images
from datamodules.io.atomic import atomic_write, write_bytes_atomic, write_text_atomic
from datamodules.transforms import resize_images, resize_masks


def _arrays(n=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    masks = (rng.random((n, size, size)) > 0.7).astype(np.uint8)
    return CaseArrays(
        rng.random((n, size, size)).astype(np.float32), masks, [f"s{i}" for i in range(n)]
    )


def _stored(tmp_path):
    source = tmp_path / "volume.bin"
    source.write_bytes(b"abc")
    cache = PreprocessingCache(tmp_path / "cache", "ct", {"window": [1500, -600]})
    key = cache.key([source])
    cache.store(key, _arrays(), [source], patient="p1")
    return cache, key, source


def test_store_and_load_round_trip_at_16_bits(tmp_path):
    source = tmp_path / "volume.bin"
    source.write_bytes(b"abc")
    cache = PreprocessingCache(tmp_path / "cache", "ct", {"window": [1500, -600]})
    key = cache.key([source])
    assert cache.problem(key, [source]) == "missing"
    arrays = _arrays()
    cache.store(key, arrays, [source], patient="p1")
    assert cache.problem(key, [source]) is None
    loaded = cache.load(key)
    np.testing.assert_allclose(loaded.images, arrays.images, atol=0.5 / 65535 + 1e-7)
    np.testing.assert_array_equal(loaded.masks, arrays.masks)
    assert loaded.ids == arrays.ids and cache.index(key)["patient"] == "p1"
    # a narrow range survives: 278 distinct levels in 0.004 of the range stay distinct
    narrow = (32768 + np.arange(278, dtype=np.float32)) / 65535
    assert len(np.unique(decode_images(encode_images(narrow)))) == 278
    assert len(np.unique(narrow.astype(np.float16))) < 20  # what float16 storage did


def test_key_is_stable_and_a_changed_source_makes_the_entry_stale(tmp_path):
    cache, key, source = _stored(tmp_path)
    assert cache.key([source]) == key
    assert PreprocessingCache(tmp_path / "cache", "ct", {"window": [1, 2]}).key([source]) != key
    assert cache.key([source], meta={"rle": "1 2"}) != key
    source.write_bytes(b"abcd")
    assert cache.problem(key, [source]).startswith("stale: its source files changed")
    os.utime(source, ns=(1, 1))
    assert cache.problem(key, [source]).startswith("stale")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("truncate_image", "truncated: the image array is"),
        ("flip_mask_byte", "corrupt: the mask array's checksum"),
        ("flip_index_byte", "corrupt index"),
        ("remove_image", "torn: the image array"),
        ("garbage_index", "corrupt index (JSONDecodeError"),
    ],
)
def test_torn_and_corrupted_entries_are_detected(tmp_path, damage, expected):
    cache, key, source = _stored(tmp_path)
    image, mask = cache.array_paths(key)
    index = image.with_name(f"{key}.json")
    if damage == "truncate_image":
        image.write_bytes(image.read_bytes()[:-100])
    elif damage == "flip_mask_byte":
        data = bytearray(mask.read_bytes())
        data[-5] ^= 0x01
        mask.write_bytes(bytes(data))
    elif damage == "flip_index_byte":
        text = index.read_text()
        at = text.index('"s1"') + 2  # an id: still valid JSON, silently wrong without the seal
        index.write_text(text[:at] + "7" + text[at + 1 :])
    elif damage == "remove_image":
        image.unlink()
    else:
        index.write_text("{not json")
    assert cache.problem(key, [source]).startswith(expected)


def _ct_data(root, n=3, shape=(6, 5, 4)):
    for index in range(n):
        hu = (np.arange(np.prod(shape)).reshape(shape) % 700 - 900 + 30 * index).astype(np.int16)
        label = np.zeros(shape, np.uint8)
        label[:2, :2, 1:3] = 1
        nifti_patient(root / f"case{index}", hu, label)
    return root


def _dm(root, cache_dir):
    return CTDataModule(
        data_dir=str(root), cache_dir=str(cache_dir), image_size=None, split_fractions=(1, 1, 1)
    )


def _items(dm):
    dm.setup()
    return {
        item["id"]: (item["image"].numpy(), item["mask"].numpy())
        for ds in (dm.train_dataset, dm.val_dataset, dm.test_dataset)
        for item in (ds[i] for i in range(len(ds)))
    }


def test_a_damaged_entry_is_reported_rebuilt_and_never_served(tmp_path, caplog):
    root = _ct_data(tmp_path / "data")
    reference = _items(_dm(root, tmp_path / "cache"))
    images = sorted((tmp_path / "cache").rglob("*.image.npy"))
    masks = sorted((tmp_path / "cache").rglob("*.mask.npy"))
    images[0].write_bytes(images[0].read_bytes()[:-40])  # a full disk, a killed copy
    data = bytearray(masks[1].read_bytes())
    data[-1] ^= 0x01  # one flipped bit in a mask
    masks[1].write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="ptx.data")
    dm = _dm(root, tmp_path / "cache")
    again = _items(dm)  # no "mmap length is greater than file size"
    assert dm.report["cases_decoded"] == 2 and dm.report["cases_from_cache"] == 1
    lines = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(lines) == 2
    assert any(images[0].name.split(".")[0] in line and "truncated" in line for line in lines)
    assert any(masks[1].name.split(".")[0] in line and "checksum" in line for line in lines)
    assert again.keys() == reference.keys()
    for key, (image, mask) in reference.items():
        np.testing.assert_array_equal(again[key][0], image)
        np.testing.assert_array_equal(again[key][1], mask)


def test_two_processes_filling_one_cache_build_each_entry_once(tmp_path):
    cache = PreprocessingCache(tmp_path / "cache", "ct", {"s": 1})
    keys = [cache.key([], meta=i) for i in range(12)]
    context = multiprocessing.get_context("spawn")  # a clean interpreter, as a second run
    start = context.Barrier(2)
    workers = [
        context.Process(
            target=writer, args=(str(tmp_path / "cache"), order, str(tmp_path / n), start)
        )
        for n, order in (("a", keys), ("b", keys[::-1]))  # they meet in the middle
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    built = [int((tmp_path / n).read_text()) for n in ("a", "b")]
    assert sum(built) == len(keys)  # nobody decoded an entry the other had built
    for key in keys:
        assert cache.problem(key, []) is None
        np.testing.assert_allclose(
            cache.load(key).images,
            entry_arrays(key).images,
            atol=1e-4,
        )
    assert not list((tmp_path / "cache").rglob("*.tmp-*"))  # no temporary file left


def test_atomic_writes(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    write_text_atomic(path, "one")
    with pytest.raises(RuntimeError), atomic_write(path) as fh:
        fh.write("half a")
        raise RuntimeError("killed")
    assert path.read_text() == "one" and len(list(path.parent.iterdir())) == 1
    with pytest.raises(FileExistsError):
        write_text_atomic(path, "two", overwrite=False)
    assert path.read_text() == "one"
    secret = write_bytes_atomic(tmp_path / "s", b"\x00\x01", permissions=0o600, overwrite=False)
    assert secret.read_bytes() == b"\x00\x01" and secret.stat().st_mode & 0o777 == 0o600
    with atomic_write(tmp_path / "a.npy", "wb") as fh:
        np.save(fh, np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), [0, 1, 2])


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
