"""``ptx report NAME``: a sweep's table, figures and W&B summary run, from its run records.

    ptx report compare-ct [--group G] [--runs-dir D] [--out results] [--seeds 0,1] [--no-wandb]

Writes ``<out>/<group>/``: ``table.md`` (the table with its footnotes), ``table.csv`` (one
row per cell, every number unrounded), ``table.json`` (the same with the sweep's metadata),
``dice_histogram.png``, ``overlays.png``, ``training_curves.png``; prints the Markdown table.
The runner calls ``write_report`` at the end of a sweep. W&B never fails a report: a failed
start or upload is a warning.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from ablations import figures, stats
from ablations.markdown import render_markdown
from ablations.records import load_sweep_runs
from ablations.sweeps import Sweep, SweepError, load_sweep
from ablations.table import Table, build_table, write_csv, write_json
from lightning_modules.records import json_safe

log = logging.getLogger("ptx.report")

FIGURES = {
    "dice_histogram": figures.dice_histogram,
    "overlays": figures.overlay_grid,
    "training_curves": figures.training_curves,
}


def log_to_wandb(table: Table, folder: Path, pictures: dict[str, Path]) -> str | None:
    """A W&B summary run of the sweep's group: the table and the figures.

    Project ``$WANDB_PROJECT`` or ``ptx-<modality>`` (entity ``$WANDB_ENTITY``), group the
    sweep's, job type ``report``, name
    ``<sweep>-report``, files under ``folder/wandb``. The mode is
    ``experiments.wandb_setup.wandb_mode`` (online with a key, else offline; ``disabled`` via
    ``$WANDB_MODE``); a failed online start retries offline. Returns a note when W&B failed.
    """
    from experiments.wandb_setup import wandb_mode

    mode, why = wandb_mode()
    if mode == "disabled":
        log.info("W&B disabled (%s): no summary run", why)
        return None
    try:
        import wandb

        sweep = table.sweep
        for attempt in [mode] + (["offline"] if mode == "online" else []):
            try:
                run = wandb.init(
                    project=os.environ.get("WANDB_PROJECT") or f"ptx-{sweep.modality}",
                    entity=os.environ.get("WANDB_ENTITY") or None,
                    group=sweep.group,
                    job_type="report",
                    name=f"{sweep.name}-report",
                    dir=str(folder),  # W&B adds wandb/: <out>/<group>/wandb/offline-run-*
                    mode=attempt,
                    reinit="create_new",  # a sweep process may still hold a training run
                    config={"sweep": sweep.name, "seeds": table.seeds, "profiles": table.profiles},
                    settings=wandb.Settings(console="off", init_timeout=60),
                )
                break
            except Exception as err:  # no network or a bad key: offline is still worth having
                if attempt == "offline":
                    raise
                log.warning("W&B online start failed (%s); logging the report offline", err)
        rows = [[json_safe(row[k]) for k in table.columns] for row in table.rows]
        logged = {"table": wandb.Table(columns=table.columns, data=rows)}
        logged.update({name: wandb.Image(str(path)) for name, path in pictures.items()})
        run.log(logged)
        run.finish()
        log.info("W&B %s summary run %s-report (%s)", attempt, sweep.name, why)
        return None
    except Exception as err:  # W&B must never cost the user the report itself
        log.warning("W&B summary run failed (%s); the report files are complete", err)
        return f"W&B summary run failed: {type(err).__name__}"


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: the folder, the table and its Markdown."""

    folder: Path
    table: Table
    markdown: str


def write_report(
    sweep: Sweep | str,
    runs_dir: str | Path | None = None,
    out_dir: str | Path = "results",
    wandb: bool = True,
    seeds: list[int] | None = None,
    n_resamples: int = stats.N_RESAMPLES,
) -> Report:
    """Rebuild the sweep's table and figures from its run records into ``<out_dir>/<group>``,
    print the table and log the W&B summary run (when ``wandb``).

    ``sweep``: a ``Sweep`` or a sweep name/path. ``runs_dir``: the runs root (default
    ``$PTX_RUNS_DIR``, else ``./runs``); runs are read from ``<group>/<cell>-s<seed>/`` (and
    ``<cell>-f<fold>-s<seed>/``) there. ``seeds``: the seeds the sweep ran (default: every
    seed on disk); a missing one is "not run". ``n_resamples``: of the patient bootstrap.
    """
    from experiments.run_dir import runs_root

    sweep = load_sweep(sweep) if isinstance(sweep, str) else sweep
    root = runs_root(str(runs_dir) if runs_dir else None)
    cells = load_sweep_runs(sweep, root, seeds)  # the folds found on disk, if k-fold
    table = build_table(sweep, cells, n_resamples=n_resamples)
    folder = Path(out_dir).resolve() / sweep.group
    folder.mkdir(parents=True, exist_ok=True)
    notes, pictures = [], {}
    for name, draw in FIGURES.items():
        path = folder / f"{name}.png"
        path.unlink(missing_ok=True)  # a figure left from an earlier report would mislead
        try:
            notes += draw(cells, path)
        except Exception as err:  # a figure is a view of the table, never a reason to lose it
            log.warning("figure %s failed: %s", name, err)
            notes.append(f"figure {name} failed: {type(err).__name__}")
        if path.is_file():
            pictures[name] = path
    if wandb:
        note = log_to_wandb(table, folder, pictures)
        notes += [note] if note else []
    markdown = render_markdown(table, notes)
    (folder / "table.md").write_text(markdown)
    write_csv(table, folder / "table.csv")
    write_json(table, notes, folder / "table.json")
    print(f"{markdown}\nreport written to {folder}/ (table.md, table.csv, table.json, figures)")
    return Report(folder, table, markdown)


def cli(argv: list[str] | None = None) -> int:
    """``ptx report``; 0 when written, 1 when no cell has a finished run, 2 on bad arguments."""
    from experiments.cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="ptx report",
        description="rebuild a sweep's table, figures and W&B summary run",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("sweep", help="sweep name (ablations/sweeps/NAME.yaml) or a YAML path")
    parser.add_argument("--group", help="run group to read (default: the sweep's)")
    parser.add_argument("--runs-dir", help="runs root (default: $PTX_RUNS_DIR, else ./runs)")
    parser.add_argument("--out", default="results", help="report root")
    parser.add_argument("--seeds", help="comma-separated seeds (default: those found)")
    parser.add_argument("--resamples", type=int, default=stats.N_RESAMPLES, help="bootstrap size")
    parser.add_argument("--no-wandb", action="store_true", help="no W&B summary run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sweep = load_sweep(args.sweep)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except (SweepError, ValueError) as err:
        print(f"ptx report: {err}", file=sys.stderr)
        return 2
    if args.group:
        sweep = dataclasses.replace(sweep, group=args.group)
    from experiments.run_dir import runs_root

    table = write_report(
        sweep, args.runs_dir, args.out, not args.no_wandb, seeds, args.resamples
    ).table
    if not any(row["seeds"] for row in table.rows):
        print(
            f"ptx report: no finished run of sweep {sweep.name} under "
            f"{runs_root(args.runs_dir) / sweep.group}; run `ptx sweep "
            f"{sweep.name}` first or pass --runs-dir/--group",
            file=sys.stderr,
        )
        return 1
    return 0
