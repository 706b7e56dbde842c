"""Two runners started at once on one 4-cell sweep train each cell once and the report has all
four; ``--launcher local`` (submitit's local executor, the SLURM array's path) runs the same
sweep to its report. Real ``ptx sweep`` processes on a tiny phantom sweep."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

TINY = """
title: "tiny sweep for the concurrency tests"
reference: r18
overrides:
  trainer.max_epochs: 1
  trainer.limit_train_batches: 2
  trainer.limit_val_batches: 1
  trainer.num_sanity_val_steps: 0
  data.init_args.phantom: {patients: 8, size: 96, slices: 12}
columns: [dice, {key: params, label: Param, source: run}]
cells:
  - {id: r18, exp: ct/unet, overrides: {model.net_kwargs.encoder_name: resnet18}}
  - id: r18-lr
    exp: ct/unet
    overrides: {model.net_kwargs.encoder_name: resnet18, model.optimizer.init_args.lr: 0.01}
  - {id: fpn18, exp: ct/fpn, overrides: {model.net_kwargs.encoder_name: resnet18}}
  - {id: link18, exp: ct/linknet, overrides: {model.net_kwargs.encoder_name: resnet18}}
"""
CELLS = ("r18", "r18-lr", "fpn18", "link18")


def _sweep(tmp_path, *args):
    definition = tmp_path / "tiny.yaml"
    definition.write_text(TINY)
    command = [sys.executable, "-m", "experiments.cli", "sweep", str(definition), *args]
    command += ["--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "results")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _table_rows(tmp_path) -> dict[str, str]:
    table = (tmp_path / "results" / "tiny" / "table.md").read_text()
    return {c: next((r for r in table.splitlines() if r.startswith(f"| {c} ")), "") for c in CELLS}


def _finished(tmp_path, cell) -> bool:
    record = json.loads((tmp_path / "runs" / "tiny" / f"{cell}-s0" / "metrics.json").read_text())
    return record["status"] == "finished" and len(record["history"]) == 1


def test_two_runners_at_once_train_each_cell_once(tmp_path):
    runners = [_sweep(tmp_path), _sweep(tmp_path)]
    outputs = [r.communicate(timeout=900)[0] for r in runners]
    assert [r.returncode for r in runners] == [0, 0], outputs
    starts = [
        name
        for output in outputs
        for name in re.findall(r"\] (?:starting|resuming) (\S+)-s0 ", output)
    ]
    assert sorted(starts) == sorted(CELLS), outputs  # 4 fit starts for 4 cells
    skips = sum(o.count("skipping ") for o in outputs)
    assert skips >= 1, outputs  # the runner that was second said so
    assert all(_finished(tmp_path, c) for c in CELLS)
    rows = _table_rows(tmp_path)
    assert all(rows[c] and "not run" not in rows[c] and "unfinished" not in rows[c] for c in CELLS)
    state = json.loads((tmp_path / "runs" / "tiny" / "sweep.json").read_text())
    assert {n: s["status"] for n, s in state["runs"].items()} == {
        f"{c}-s0": "finished" for c in CELLS
    }  # both runners' entries kept


def test_the_local_launcher_runs_the_sweep_to_its_report(tmp_path):
    runner = _sweep(tmp_path, "--launcher", "local")
    output = runner.communicate(timeout=900)[0]
    assert runner.returncode == 0, output
    assert "4 submitit tasks done: 0 failed, 0 skipped" in output
    assert all(_finished(tmp_path, c) for c in CELLS)
    rows = _table_rows(tmp_path)
    assert all(rows[c] and "| s0 |" in rows[c] for c in CELLS), rows
    logs = list((tmp_path / "runs" / "tiny" / ".submitit").glob("*_log.out"))
    assert len(logs) == 4  # one submitit job per (cell, seed)
    again = _sweep(tmp_path, "--launcher", "local")
    output = again.communicate(timeout=600)[0]
    assert "4 runs (4 finished, 0 to resume, 0 to start)" in output  # nothing left to submit


def test_two_workers_run_the_sweep_and_a_killed_one_resumes(tmp_path):
    import signal
    import time

    def start():
        definition = tmp_path / "tiny.yaml"
        definition.write_text(TINY)
        command = [sys.executable, "-m", "experiments.cli", "sweep", str(definition)]
        command += ["--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "results")]
        command += ["--parallel", "2"]
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        return subprocess.Popen(
            command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    first = start()
    deadline = time.monotonic() + 600
    group = tmp_path / "runs" / "tiny"
    while time.monotonic() < deadline and not any(
        (group / f"{c}-s0" / "metrics.json").is_file() for c in CELLS
    ):
        time.sleep(0.5)
    first.send_signal(signal.SIGTERM)  # the sweep's own process: it stops its workers
    output = first.communicate(timeout=300)[0]
    assert first.returncode == 130, output
    assert "2 workers, 1 torch thread each" in output
    assert "stopping the workers" in output and "interrupted" in output

    second = start()
    output = second.communicate(timeout=900)[0]
    assert second.returncode == 0, output
    assert all(_finished(tmp_path, c) for c in CELLS), output
    starts = re.findall(r"\] (?:starting|resuming) (\S+)-s0 ", output)
    assert len(starts) == len(set(starts)) <= len(CELLS)  # each job once, none left over
    for cell in CELLS:  # each run's console output (Lightning's included) in its own log
        assert "Trainer.fit" in (group / "logs" / f"{cell}-s0.log").read_text()
    rows = _table_rows(tmp_path)
    assert all(rows[c] and "| s0 |" in rows[c] for c in CELLS), rows
