import json

import pytest

from datamodules.io.errors import DataError
from datamodules.splits import (
    check_split,
    load_split,
    save_split,
    split_patients,
    stratified_split,
)


def test_paper_proportions_on_sixty_patients():
    patients = [f"p{i:02d}" for i in range(60)]
    split = split_patients(patients, (50, 4, 6), seed=3)
    assert [len(split[s]) for s in ("train", "val", "test")] == [50, 4, 6]
    assert sorted(sum(split.values(), [])) == patients


def test_split_is_seeded():
    patients = [f"p{i}" for i in range(20)]
    assert split_patients(patients, seed=1) == split_patients(patients, seed=1)
    assert split_patients(patients, seed=1) != split_patients(patients, seed=2)


def test_small_sets_keep_val_and_test():
    split = split_patients(["a", "b", "c", "d", "e"], (50, 4, 6))
    assert [len(split[s]) for s in ("train", "val", "test")] == [3, 1, 1]


def test_stratified_split_keeps_label_shares():
    labels = {f"p{i}": int(i < 50) for i in range(100)}
    split = stratified_split(labels, (64, 16, 20), seed=0)
    for subset, n in (("train", 64), ("val", 16), ("test", 20)):
        members = split[subset]
        assert len(members) == n
        assert sum(labels[p] for p in members) == n // 2


def test_overlapping_split_is_refused():
    with pytest.raises(DataError, match="patient p1"):
        check_split({"train": ["p0", "p1"], "val": ["p1"], "test": []})


def test_split_file_round_trip(tmp_path):
    split = split_patients([f"p{i}" for i in range(10)], seed=0)
    path = save_split(split, tmp_path / "split.json", seed=0)
    assert json.loads(path.read_text())["seed"] == 0
    assert load_split(path) == split


def test_the_split_follows_the_data_order_not_the_keys_values():
    """Keys are HMACs under the site secret: two sites (two secrets) key the same 20
    patients differently, and must still put the same patients in the same subsets."""
    import hashlib

    site_a = [hashlib.sha256(f"a{i}".encode()).hexdigest()[:12] for i in range(20)]
    site_b = [hashlib.sha256(f"b{i}".encode()).hexdigest()[:12] for i in range(20)]
    assert sorted(site_a) != site_a  # the keys' sorted order is not the data order
    split_a, split_b = split_patients(site_a, (12, 3, 5)), split_patients(site_b, (12, 3, 5))
    for subset in ("train", "val", "test"):
        assert sorted(site_a.index(k) for k in split_a[subset]) == sorted(
            site_b.index(k) for k in split_b[subset]
        )
