"""Patient keys: HMAC-SHA-256 under a per-site secret made once with owner-only permissions;
runs record a fingerprint of the secret and sweeps and reports refuse to mix secrets."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path

import pytest
import yaml

from ablations.plan import plan
from ablations.records import CellRuns, Run, check_id_fingerprints
from ablations.sweeps import Cell, SweepError, load_sweep
from datamodules.layouts import privacy
from lightning_modules.metric_functions import RECORD_VERSION
from lightning_modules.records import FINISHED, RecordError


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh site: no PTX_ID_SALT, a private cache folder, no remembered secret."""
    monkeypatch.delenv("PTX_ID_SALT", raising=False)
    monkeypatch.setenv("PTX_CACHE_DIR", str(tmp_path / "cache"))
    privacy._from_file.cache_clear()
    yield tmp_path / "cache"
    privacy._from_file.cache_clear()


def test_keys_are_hmac_sha256_under_the_salt(monkeypatch):
    monkeypatch.setenv("PTX_ID_SALT", "site secret")
    expected = hmac.new(b"site secret", b"00482913", hashlib.sha256).hexdigest()[:12]
    assert privacy.anonymous_key("00482913") == f"p{expected}"
    assert privacy.anonymous_key("00482913", prefix="i", length=8) == f"i{expected[:8]}"
    monkeypatch.setenv("PTX_ID_SALT", "another site")
    assert privacy.anonymous_key("00482913") != f"p{expected}"


def test_a_random_secret_is_made_once_owner_only(site, caplog):
    caplog.set_level(logging.INFO, logger="ptx.data.privacy")
    key = privacy.anonymous_key("MRN00482913")
    path = site / "id_secret"
    assert path.stat().st_mode & 0o777 == 0o600
    secret = path.read_text().strip()
    assert len(secret) == 64 and int(secret, 16) >= 0  # 32 random bytes, hex
    assert key == "p" + hmac.new(secret.encode(), b"MRN00482913", hashlib.sha256).hexdigest()[:12]
    privacy._from_file.cache_clear()
    assert privacy.anonymous_key("MRN00482913") == key  # read back, not made again
    privacy._create_secret(path)  # a second process arriving late: keeps the first secret
    assert path.read_text().strip() == secret
    assert not any("old public salt" in r.getMessage() for r in caplog.records)


def test_a_cache_from_the_old_default_salt_is_warned_about_once(site, caplog):
    (site / "preprocessed" / "ct").mkdir(parents=True)
    caplog.set_level(logging.WARNING, logger="ptx.data.privacy")
    for value in ("a", "b", "c"):
        privacy.anonymous_key(value)
    warnings = [r.getMessage() for r in caplog.records if "old public salt" in r.getMessage()]
    assert len(warnings) == 1 and "PTX_ID_SALT=ptx-seg" in warnings[0]


def test_fingerprint_tells_secrets_apart_without_revealing_them(site, monkeypatch):
    made = privacy.id_fingerprint()
    assert len(made) == 8 and made not in (site / "id_secret").read_text()
    monkeypatch.setenv("PTX_ID_SALT", "x")
    assert privacy.id_fingerprint() != made
    assert privacy.id_fingerprint() == privacy.id_fingerprint(b"x")


def test_run_records_carry_the_fingerprint(monkeypatch):
    from experiments.run_info import run_info

    monkeypatch.setenv("PTX_ID_SALT", "s1")
    model = {"net": "unet", "loss": "ce", "net_kwargs": {"encoder_name": "resnet34"}}
    info = run_info("ct/unet", "quick", "g", "n", "ct", model, 0)
    assert info["id_fingerprint"] == privacy.id_fingerprint(b"s1")


def _finished(run_dir: Path, exp: str, fingerprint: str | None, version=RECORD_VERSION) -> None:
    run_dir.mkdir(parents=True)
    record = {"status": "finished", "experiment": exp, "profile": "quick"}
    record["record_version"] = version
    if fingerprint:
        record["id_fingerprint"] = fingerprint
    (run_dir / "metrics.json").write_text(json.dumps(record))
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"data": {"init_args": {}}}))


def test_the_planner_refuses_runs_of_another_secret(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PTX_ID_SALT", "site A")
    sweep = load_sweep("ablation-efa")
    first, second = sweep.cells[:2]
    group = tmp_path / "ablation-efa"
    _finished(group / first.run_name(0), first.exp, privacy.id_fingerprint())
    _finished(group / second.run_name(0), second.exp, None)  # older: accepted, warned
    caplog.set_level(logging.WARNING, logger="ptx.sweep")
    assert [j.action for j in plan(sweep, tmp_path, [0], "quick", None)[:2]] == ["done"] * 2
    assert any("records no identifier-secret" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("PTX_ID_SALT", "site B")
    with pytest.raises(SweepError, match=r"identifier secret [0-9a-f]{8} \(this sweep: "):
        plan(sweep, tmp_path, [0], "quick", None)


def test_the_planner_refuses_runs_that_recorded_file_stems(tmp_path, monkeypatch):
    """Record version 2 stored radiograph ids as file stems: such a run is not reused."""
    monkeypatch.setenv("PTX_ID_SALT", "site A")
    sweep = load_sweep("compare-xray")
    cell = sweep.cells[0]
    _finished(tmp_path / sweep.group / cell.run_name(0), cell.exp, privacy.id_fingerprint(), 2)
    with pytest.raises(SweepError, match=r"record version 2 recorded radiograph ids as their"):
        plan(sweep, tmp_path, [0], "quick", None, only=[cell.id])


def test_the_report_refuses_tables_mixing_secrets(tmp_path):
    def cell_runs(cell_id, fingerprint):
        metrics = {"status": FINISHED, "id_fingerprint": fingerprint}
        run = Run(cell_id, 0, tmp_path / f"{cell_id}-s0", FINISHED, metrics=metrics)
        return CellRuns(Cell(cell_id, cell_id, "ct/unet"), [run])

    check_id_fingerprints([cell_runs("a", "1234abcd"), cell_runs("b", "1234abcd")])
    with pytest.raises(RecordError, match=r"different identifier secrets \(1234abcd: 1 runs"):
        check_id_fingerprints([cell_runs("a", "1234abcd"), cell_runs("b", "99990000")])
