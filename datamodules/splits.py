"""Patient-level train/val/test splits: seeded, stratified where asked, saved as JSON.

A split maps ``"train"``, ``"val"`` and ``"test"`` to lists of non-identifying patient keys.
Every image of a patient lands in the same subset; :func:`check_split` asserts it.
:func:`kfold_split` draws fold ``k`` of a patient-grouped, stratified k-fold instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from datamodules.io.atomic import write_text_atomic
from datamodules.io.errors import DataError

SUBSETS = ("train", "val", "test")
Split = dict[str, list[str]]


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Counts per subset summing to ``n``; val and test get at least one item when n >= 3."""
    weights = np.asarray(fractions, dtype=float)
    if weights.shape != (3,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"split fractions must be three non-negative numbers, got {fractions}")
    raw = weights / weights.sum() * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n - counts.sum()]:  # largest remainders first
        counts[i] += 1
    if n >= 3:
        for i in (2, 1):  # never leave val or test empty when there is enough data
            if weights[i] > 0 and counts[i] == 0:
                counts[i] = 1
                counts[int(np.argmax(counts))] -= 1
    return counts.tolist()


def split_patients(
    patients: Sequence[str], fractions: Sequence[float] = (50, 4, 6), seed: int = 0
) -> Split:
    """Seeded random split of patient keys in the given proportions (default: the CT paper).

    The keys are shuffled from the order given (the data's own order: sorted patient
    folders, manifest rows, sorted image ids), not from their sorted values: the keys are
    HMACs under the site's secret, so sorting them would give every site (and every fresh
    CI machine) a different split of the same data.
    """
    unique = list(dict.fromkeys(patients))
    order = np.random.default_rng(seed).permutation(len(unique))
    counts = _allocate(len(unique), fractions)
    shuffled = [unique[i] for i in order]
    bounds = np.cumsum([0, *counts])
    return {s: sorted(shuffled[bounds[i] : bounds[i + 1]]) for i, s in enumerate(SUBSETS)}


def stratified_split(
    patient_labels: Mapping[str, int], fractions: Sequence[float] = (64, 16, 20), seed: int = 0
) -> Split:
    """Split patients so each subset keeps the share of each label (default: the X-ray paper).

    ``patient_labels`` maps a patient key to its stratum (1 if any image is pneumothorax).
    """
    split: Split = {s: [] for s in SUBSETS}
    for label in sorted(set(patient_labels.values())):
        stratum = [p for p, v in patient_labels.items() if v == label]
        part = split_patients(stratum, fractions, seed=seed + 7919 * (label + 1))
        for s in SUBSETS:
            split[s].extend(part[s])
    return {s: sorted(v) for s, v in split.items()}


def patient_labels(cases: Iterable) -> dict[str, int]:
    """Each patient's stratum, in the data's order: 1 if any of its cases (anything with a
    ``patient`` key and a ``label``, None counting as 0) is pneumothorax, else 0."""
    labels: dict[str, int] = {}
    for case in cases:
        labels[case.patient] = max(labels.get(case.patient, 0), int(case.label or 0))
    return labels


def check_fold_args(folds: int | None, fold: int) -> None:
    """Raise ValueError unless ``folds`` (None: no k-fold) and ``fold`` make sense."""
    if folds is None:
        if fold != 0:
            raise ValueError(f"fold={fold} needs folds (the number of folds, >= 2)")
        return
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1} for folds={folds}, got {fold}")


def kfold_split(
    patient_labels: Mapping[str, int], folds: int, fold: int, val_fraction: float, seed: int
) -> Split:
    """Fold ``fold`` (0-based) of a patient-grouped k-fold, stratified by pneumothorax.

    ``patient_labels`` maps a patient key to its stratum (1 if any image is pneumothorax), in
    the data's order. The test set is fold ``fold`` of scikit-learn's
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` over the patients, one row
    per patient: grouping by patient is then exact, and every patient is tested exactly once
    over the folds, each fold holding within one patient of its share of each stratum. Rows
    are in the data's order (as :func:`split_patients`), so every site gets the same folds.
    ``StratifiedGroupKFold`` would do the same with groups of one row but, before
    scikit-learn 1.8 (PR #32540), its ``shuffle=True`` dealt groups unstratified. The other
    patients are split into train and val by :func:`stratified_split` (``val_fraction`` of
    them in val, at least one).
    """
    from sklearn.model_selection import StratifiedKFold

    check_fold_args(folds, fold)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    patients = list(patient_labels)
    labels = np.asarray([int(patient_labels[p]) for p in patients])
    if folds > len(patients):
        raise ValueError(f"folds={folds} exceeds the number of patients ({len(patients)})")
    counts = {int(v): int((labels == v).sum()) for v in np.unique(labels)}
    if set(counts) - {0, 1}:
        raise ValueError(f"patient labels must be 0 or 1, got {sorted(counts)}")
    if min(counts.values()) < folds:
        raise ValueError(
            f"folds={folds} needs at least {folds} patients of each label; "
            f"have {counts.get(1, 0)} with and {counts.get(0, 0)} without pneumothorax"
        )
    kfold = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    _, test_rows = list(kfold.split(np.zeros((len(patients), 1)), labels))[fold]
    test = {patients[i] for i in test_rows}
    rest = {p: patient_labels[p] for p in patients if p not in test}
    split = stratified_split(rest, (1 - val_fraction, val_fraction, 0), seed=seed)
    if not split["val"] and len(split["train"]) > 1:  # tiny strata round val away
        train = [p for p in rest if p in set(split["train"])]  # the data's order, not keys'
        moved = train[int(np.random.default_rng(seed).integers(len(train)))]
        split = {"train": sorted(set(train) - {moved}), "val": [moved], "test": []}
    split["test"] = sorted(test)
    return split


def check_split(split: Mapping[str, Sequence[str]]) -> None:
    """Raise if a patient appears in two subsets or a subset name is unknown."""
    unknown = set(split) - set(SUBSETS)
    if unknown:
        raise DataError(f"split has unknown subsets {sorted(unknown)}; expected {SUBSETS}")
    seen: dict[str, str] = {}
    for subset in SUBSETS:
        for patient in split.get(subset, []):
            if patient in seen:
                raise DataError(
                    f"patient appears in both {seen[patient]!r} and {subset!r}",
                    patient=patient,
                )
            seen[patient] = subset


def save_split(split: Mapping[str, Sequence[str]], path: str | Path, **info) -> Path:
    """Write the split (and any extra ``info``, e.g. seed) as JSON, atomically; returns the
    path. This module owns the split format: a run's ``split.json`` and a hand-written
    ``--data.split_file`` are the same file."""
    payload = {**info, **{s: list(split.get(s, [])) for s in SUBSETS}}
    return write_text_atomic(path, json.dumps(payload, indent=1), durable=False)


def load_split(path: str | Path) -> Split:
    """Read a split JSON written by :func:`save_split` (or by hand) and check it."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read split file ({err})", path=path) from err
    split = {s: list(payload.get(s, [])) for s in SUBSETS}
    check_split(split)
    return split
