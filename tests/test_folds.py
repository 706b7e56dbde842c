"""Patient-grouped k-fold splits: partition, stratification, seeding, errors, DataModule."""

import hashlib
import json
from types import SimpleNamespace

import pytest

from datamodules import XRayDataModule
from datamodules.splits import (
    SUBSETS,
    check_fold_args,
    check_split,
    kfold_split,
    load_split,
    patient_labels,
)

VAL = 4 / 54  # the CT paper's 50/4/6: val share of train + val


def _labels(n: int = 60, positive: int = 45) -> dict[str, int]:
    """``n`` patients in data order, the negatives spread through it."""
    step = n / (n - positive)
    negative = {int(i * step) for i in range(n - positive)}
    return {f"p{i:02d}": int(i not in negative) for i in range(n)}


def _folds(labels, folds=5, seed=0, val=VAL):
    return [kfold_split(labels, folds, k, val, seed) for k in range(folds)]


def test_test_folds_partition_the_patients():
    labels = _labels()
    tests = [set(s["test"]) for s in _folds(labels)]
    assert sorted(p for t in tests for p in t) == sorted(labels)  # every patient once
    assert all(not a & b for i, a in enumerate(tests) for b in tests[i + 1 :])


@pytest.mark.parametrize("n, positive, folds", [(60, 45, 5), (53, 38, 5), (23, 9, 4)])
def test_each_fold_is_a_stratified_patient_split(n, positive, folds):
    labels = _labels(n, positive)
    for split in _folds(labels, folds):
        check_split(split)
        assert sorted(sum((split[s] for s in SUBSETS), [])) == sorted(labels)
        test_positive = sum(labels[p] for p in split["test"])
        test_negative = len(split["test"]) - test_positive
        assert abs(test_positive - positive / folds) < 1
        assert abs(test_negative - (n - positive) / folds) < 1
        rest = n - len(split["test"])
        assert split["val"] and abs(len(split["val"]) - VAL * rest) <= 1.5


def test_observed_counts_of_five_folds_over_sixty_patients():
    labels = _labels()
    counts = [
        (len(s["train"]), len(s["val"]), len(s["test"]), sum(labels[p] for p in s["test"]))
        for s in _folds(labels)
    ]
    assert counts == [(44, 4, 12, 9)] * 5  # 45 / 5 positive and 15 / 5 negative per test


def test_folds_are_seeded():
    labels = _labels()
    assert _folds(labels, seed=1) == _folds(labels, seed=1)
    tests = {seed: [s["test"] for s in _folds(labels, seed=seed)] for seed in (1, 2)}
    assert tests[1] != tests[2]


def test_folds_follow_the_data_order_not_the_keys_values():
    """Two sites key the same patients differently (HMAC under their secret): same folds."""
    site_a = [hashlib.sha256(f"a{i}".encode()).hexdigest()[:12] for i in range(30)]
    site_b = [hashlib.sha256(f"b{i}".encode()).hexdigest()[:12] for i in range(30)]
    strata = [int(i % 3 != 0) for i in range(30)]
    split_a = kfold_split(dict(zip(site_a, strata, strict=True)), 3, 2, 0.2, seed=0)
    split_b = kfold_split(dict(zip(site_b, strata, strict=True)), 3, 2, 0.2, seed=0)
    for subset in SUBSETS:
        assert sorted(site_a.index(k) for k in split_a[subset]) == sorted(
            site_b.index(k) for k in split_b[subset]
        )


def test_small_and_single_class_sets():
    tiny = kfold_split({f"p{i}": i % 2 for i in range(6)}, 3, 0, 0.05, seed=0)
    assert [len(tiny[s]) for s in SUBSETS] == [3, 1, 2]  # val never rounded away
    every = _folds({f"p{i}": 1 for i in range(10)})  # all with pneumothorax: plain k-fold
    assert sorted(p for s in every for p in s["test"]) == [f"p{i}" for i in range(10)]


@pytest.mark.parametrize(
    "labels, folds, fold, val, message",
    [
        (_labels(), 1, 0, VAL, "folds must be at least 2, got 1"),
        (_labels(), 5, 5, VAL, r"fold must be in 0\.\.4 for folds=5, got 5"),
        (_labels(), 5, -1, VAL, r"fold must be in 0\.\.4"),
        (_labels(), 61, 0, VAL, r"folds=61 exceeds the number of patients \(60\)"),
        (_labels(60, 57), 5, 0, VAL, "have 57 with and 3 without pneumothorax"),
        (_labels(), 5, 0, 0.0, "val_fraction must be between 0 and 1"),
        ({"a": 0, "b": 2, "c": 1}, 2, 0, VAL, r"labels must be 0 or 1, got \[0, 1, 2\]"),
    ],
)
def test_bad_arguments_are_refused(labels, folds, fold, val, message):
    with pytest.raises(ValueError, match=message):
        kfold_split(labels, folds, fold, val, seed=0)


def test_fold_without_folds_is_refused():
    with pytest.raises(ValueError, match="fold=2 needs folds"):
        check_fold_args(None, 2)
    with pytest.raises(ValueError, match="fold=1 needs folds"):
        XRayDataModule(fold=1)


def test_patient_labels_take_the_max_over_a_patients_cases():
    cases = [SimpleNamespace(patient=p, label=v) for p, v in [("b", 0), ("a", None), ("b", 1)]]
    assert list(patient_labels(cases).items()) == [("b", 1), ("a", 0)]  # the data's order


def test_old_split_files_and_no_kfold_settings(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"modality": "ct", "seed": 0, "train": ["a"], "val": ["b"]}))
    assert load_split(old) == {"train": ["a"], "val": ["b"], "test": []}
    dm = XRayDataModule(cache_dir=str(tmp_path))
    dm.split = {"train": ["a"], "val": ["b"], "test": ["c"]}
    saved = json.loads(dm.save_split(tmp_path / "split.json").read_text())
    assert saved["folds"] is None and saved["fold"] is None and saved["modality"] == "xray"


def test_datamodule_tests_on_one_fold_and_saves_it(tmp_path):
    phantom = {"patients": 12, "size": 64}
    dm = XRayDataModule(image_size=32, cache_dir=str(tmp_path), phantom=phantom, folds=3, fold=1)
    dm.setup()
    labels = dm.patient_labels(dm.discover_cases(dm.data_root))
    assert dm.split == kfold_split(labels, 3, 1, 16 / 80, seed=0)
    members = {s: set(getattr(dm, f"{s}_dataset").patients) for s in SUBSETS}
    assert members == {s: set(dm.split[s]) for s in SUBSETS}  # every image with its patient
    assert sorted(sum(dm.split.values(), [])) == sorted(labels)
    assert len(dm.test_dataset) > len(dm.split["test"])  # some patients have several images
    path = dm.save_split(tmp_path / "split.json")
    saved = json.loads(path.read_text())
    assert (saved["folds"], saved["fold"], saved["modality"], saved["seed"]) == (3, 1, "xray", 0)
    assert load_split(path) == dm.split
