"""A run stopped after one epoch and resumed with `--ckpt_path last` ends exactly where an
uninterrupted run of the same seed ends: same weights, same validation and test metrics."""

from __future__ import annotations

import json

import pytest
import torch

from experiments.train import fit_cli

# short epochs keep three runs cheap; shuffling, flips and RNG draws are exercised all the same
SHORT = [
    "--exp",
    "ct/unet",
    "--profile",
    "quick",
    "--model.net_kwargs.encoder_name",
    "resnet18",
    "--trainer.limit_train_batches",
    "3",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
    "--trainer.num_sanity_val_steps",
    "0",
    "--data.phantom",
    "{patients: 8, size: 96, slices: 12}",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on 2 cores shared with other processes two OpenMP threads stall
    on each other (see test_train_cli)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def same(a, b, rel: float) -> bool:
    """Equal numbers within ``rel``; undefined values (null in metrics.json) only match null."""
    return a == b or (None not in (a, b) and a == pytest.approx(b, rel=rel))


def _record(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def _weights(run_dir, name="last.ckpt"):
    return torch.load(run_dir / "checkpoints" / name, weights_only=True)["state_dict"]


def test_resumed_run_matches_the_uninterrupted_one(tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    assert fit_cli([*SHORT, *runs, "--name", "whole", "--trainer.max_epochs", "2"]) == 0
    assert fit_cli([*SHORT, *runs, "--name", "split", "--trainer.max_epochs", "1"]) == 0
    first = _record(tmp_path / "ct" / "split")
    assert (first["status"], first["epochs"]) == ("finished", 1)
    after_one = _weights(tmp_path / "ct" / "split")
    resume = [*SHORT, *runs, "--name", "split", "--trainer.max_epochs", "2", "--ckpt_path", "last"]
    assert fit_cli(resume) == 0

    whole, split = tmp_path / "ct" / "whole", tmp_path / "ct" / "split"
    a, b = _weights(whole), _weights(split)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    assert not all(torch.equal(after_one[k], b[k]) for k in b)  # the resume really trained
    ra, rb = _record(whole), _record(split)
    assert rb["epochs"] == ra["epochs"] == 2 and rb["status"] == "finished"
    for stage in ("val", "test"):
        for key, value in ra[stage].items():
            assert same(rb[stage][key], value, rel=1e-5), (stage, key)
    assert rb["wall_time_s"] > first["wall_time_s"]  # the resumed run adds its own time


def test_resume_without_a_checkpoint_starts_the_run_over(tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    run_dir = tmp_path / "ct" / "fresh"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text('{"status": "running"}')  # killed before epoch 1
    argv = [*SHORT, *runs, "--name", "fresh", "--trainer.max_epochs", "1", "--ckpt_path", "last"]
    assert fit_cli(argv) == 0
    assert _record(run_dir)["status"] == "finished"


def test_a_finished_run_is_refused_then_overwritten_on_request(tmp_path, capsys):
    argv = [*SHORT, "--runs-dir", str(tmp_path), "--name", "again", "--trainer.max_epochs", "1"]
    assert fit_cli(argv) == 0
    run_dir = tmp_path / "ct" / "again"
    (run_dir / "checkpoints" / "stale.ckpt").write_bytes(b"from an earlier run")
    assert fit_cli(argv) == 2  # an input error
    assert "already holds a run" in capsys.readouterr().err
    assert (run_dir / "checkpoints" / "stale.ckpt").exists()  # refused: nothing touched
    assert fit_cli([*argv, "--overwrite"]) == 0
    assert not (run_dir / "checkpoints" / "stale.ckpt").exists()
    assert _record(run_dir)["status"] == "finished"
