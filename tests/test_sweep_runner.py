"""The sweep runner's bookkeeping: what is done, resumed or started; the fit arguments of a
cell; refusal of foreign runs; the W&B mirrors in sync with the definitions."""

from __future__ import annotations

import json

import pytest
import yaml

from ablations.plan import DONE, RESUME, START, fit_args, plan
from ablations.runner import _seeds, build_parser, cli
from ablations.sweeps import SweepError, list_sweeps, load_sweep
from ablations.wandb_mirror import MIRROR_DIR, mirror, render
from experiments.wandb_setup import run_id
from lightning_modules.metric_functions import RECORD_VERSION


def _fake_run(run_dir, status=None, last=False, profile="quick", exp="ct/unet", data=None):
    run_dir.mkdir(parents=True)
    if status:
        record = {"status": status, "experiment": exp, "profile": profile}
        record["record_version"] = RECORD_VERSION
        (run_dir / "metrics.json").write_text(json.dumps(record))
        (run_dir / "config.yaml").write_text(
            yaml.safe_dump({"data": {"init_args": {"data_dir": data}}})
        )
    if last:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")


def test_plan_skips_finished_resumes_interrupted_and_starts_the_rest(tmp_path):
    sweep = load_sweep("ablation-efa")
    group = tmp_path / "ablation-efa"
    _fake_run(group / "unet-resnet34-s0", status="finished")
    _fake_run(group / "unet-efficientnet-b5-s0", status="running", last=True)
    _fake_run(group / "fa-resnet34-s0", status="failed")  # failed before any checkpoint
    jobs = plan(sweep, tmp_path, [0, 1], "quick", None)
    assert [(j.name, j.action) for j in jobs[:4]] == [
        ("unet-resnet34-s0", DONE),
        ("unet-efficientnet-b5-s0", RESUME),
        ("fa-resnet34-s0", START),
        ("efa_net-s0", START),
    ]
    assert [j.action for j in jobs[4:]] == [START] * 4  # seed 1: nothing yet
    assert [j.action for j in plan(sweep, tmp_path, [0], "quick", None, force=True)] == [START] * 4
    only = plan(sweep, tmp_path, [0], "quick", None, only=["efa_net"])
    assert [j.name for j in only] == ["efa_net-s0"]


def test_a_finished_run_of_another_configuration_is_refused(tmp_path):
    sweep = load_sweep("ablation-efa")
    _fake_run(tmp_path / "ablation-efa" / "unet-resnet34-s0", status="finished", profile="quick")
    with pytest.raises(SweepError, match=r"profile 'quick' \(this sweep: 'paper'\).*--group"):
        plan(sweep, tmp_path, [0], "paper", None)
    with pytest.raises(SweepError, match=r"data None \(this sweep: '/data/ct'\)"):
        plan(sweep, tmp_path, [0], "quick", "/data/ct")
    # another group keeps both
    assert plan(sweep, tmp_path, [0], "paper", None, group="paper-runs")[0].action == START


def test_fit_args_of_a_cell(tmp_path):
    sweep = load_sweep("sweep-growth-rate")
    job = plan(sweep, tmp_path, [3], "quick", None, only=["ms_scse_fc_densenet-k4"])[0]
    args = fit_args(sweep, job, "quick", "/data/xr", tmp_path, extra=["--trainer.devices", "2"])
    assert args[:18] == [
        "--exp", "xray/ms_scse_fc_densenet", "--profile", "quick", "--seed", "3",
        "--group", "sweep-growth-rate", "--name", "ms_scse_fc_densenet-k4-s3",
        "--runs-dir", str(tmp_path), "--data", "/data/xr",
        "--run.sweep", "sweep-growth-rate", "--run.cell", "ms_scse_fc_densenet-k4",
    ]  # fmt: skip
    assert args[-3:] == ["--overwrite", "--trainer.devices", "2"]
    overrides = dict(zip(args[18:-3:2], args[19:-3:2], strict=True))
    assert overrides["--model.net_kwargs.growth_rate"] == "4"
    assert len(overrides) == len(sweep.overrides_for(job.cell, "quick"))
    _fake_run(job.run_dir, status="running", last=True)
    resumed = plan(sweep, tmp_path, [3], "quick", None, only=[job.cell.id])[0]
    assert fit_args(sweep, resumed, "quick", None, tmp_path)[-2:] == ["--ckpt_path", "last"]


def test_runner_command_line(tmp_path, capsys):
    assert _seeds("0,1, 2") == [0, 1, 2]
    for bad in ("a", "1,1", ""):
        with pytest.raises(SweepError, match="--seeds"):
            _seeds(bad)
    assert cli(["nope"]) == 2
    assert "unknown sweep 'nope'" in capsys.readouterr().err
    assert (
        cli(["ablation-efa", "--dry-run", "--runs-dir", str(tmp_path), "--profile", "quick"]) == 0
    )
    out = capsys.readouterr().out
    assert "4 runs (0 finished, 0 to resume, 4 to start)" in out
    assert "start   efa_net-s0" in out
    assert cli(["ablation-efa", "--data", str(tmp_path / "missing"), "--dry-run"]) == 2
    assert "no such folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", list_sweeps())
def test_wandb_mirrors_are_in_sync_and_parse(name):
    sweep = load_sweep(name)
    assert (MIRROR_DIR / f"{name}.yaml").read_text() == render(sweep), (
        "regenerate with `make wandb-mirrors`"
    )
    config = mirror(sweep)
    assert config["method"] == "grid"
    assert config["parameters"]["cells"]["values"] == [c.id for c in sweep.cells]
    # what `wandb agent` runs for one grid point, as the runner's parser reads it
    command = config["command"]
    assert command[2:6] == ["-m", "experiments.cli", "sweep", name]
    argv = [*command[5:-1], f"--cells={sweep.cells[-1].id}", "--seeds=0"]
    options = build_parser().parse_args(argv)
    assert (options.sweep, options.cells, options.seeds, options.no_report) == (
        name, sweep.cells[-1].id, "0", True,
    )  # fmt: skip


def test_a_wandb_agent_run_keeps_the_agents_run_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc")
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun1")
    assert run_id(tmp_path / "a", fresh=True) == "agentrun1"
    assert run_id(tmp_path / "a", fresh=False) == "agentrun1"  # stored for a resume
    monkeypatch.delenv("WANDB_SWEEP_ID")
    assert run_id(tmp_path / "b", fresh=True) != "agentrun1"


def test_parallel_workers_take_the_largest_networks_first(tmp_path):
    from ablations.jobs import SweepContext, parallel_jobs
    from ablations.workers import auto_workers, largest_first

    ctx = SweepContext(load_sweep("sweep-growth-rate"), "quick", None, tmp_path, "g")
    jobs = plan(ctx.sweep, tmp_path, [0], "quick", None)
    assert [j.name for j in largest_first(ctx, jobs)] == [
        f"ms_scse_fc_densenet-k{k}-s0" for k in (16, 14, 12, 10, 8, 6, 4, 2)
    ]
    assert parallel_jobs("3", lambda: 1) == 3 and parallel_jobs("auto", lambda: 2) == 2
    for bad in ("0", "two", "-1"):
        with pytest.raises(SweepError, match=f"--parallel '{bad}': give a number"):
            parallel_jobs(bad, lambda: 1)
    assert auto_workers("paper") == 1  # a paper-size cell has the machine to itself
    assert auto_workers("quick", ("--trainer.devices", "2")) == 1
