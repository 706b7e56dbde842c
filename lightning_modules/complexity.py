"""Model size: parameters and GMACs of the registered networks, beside the papers' figures.

GMACs are torch's ``FlopCounterMode`` FLOPs / 2 at one ``1 x C x 256 x 256`` image: the
multiply-accumulates of convolutions (transposed ones at their input resolution), linear
layers, matrix products and attention; normalisation, activations, resampling and
``grid_sample`` count zero. Both papers printed thop 0.1.1 counts ("FLOPs", really MACs),
which agree with ours on plain conv nets and differ where docs/models.md explains.

``ptx model-table [--models NAME ...] [--paper ct|xray] [--encoders] [--size N] [--out DIR]``
prints the Markdown table and writes ``DIR/model_table.md`` and ``DIR/model_table.csv``.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_modules.nets import create_model, list_models, model_entry

COLUMNS = (
    "model",
    "encoder",
    "paper",
    "in_channels",
    "classes",
    "params",
    "paper_params",
    "gmacs",
    "paper_gmacs",
    "seconds",
)


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    # torch has no formula for the CPU flash-attention kernel; count it like the others do:
    # Q K^T and attention x V, 2 FLOPs per MAC.
    b, h, s_q, d = query
    return 2 * b * h * s_q * key[-2] * (d + value[-1])


_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (both papers' convention; BN running statistics are buffers)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_gmacs(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 256, 256)) -> float:
    """Giga multiply-accumulates of one eval-mode forward pass on a zero input of ``input_shape``.

    The input is made on the model's device, so a model built on ``torch.device("meta")`` is
    counted without computing anything. The model's train/eval mode is restored afterwards.
    """
    tensors = [*model.parameters(), *model.buffers()]
    # smp re-creates a patched first conv on the CPU even under torch.device("meta")
    meta = any(t.is_meta for t in tensors)
    device = torch.device("meta") if meta else (tensors[0].device if tensors else None)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
        with torch.no_grad(), counter:
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2e9


def _measure(model: str, size: int, device: str, **kwargs) -> dict:
    """One table row: build ``model`` at its paper's channels and count it."""
    entry = model_entry(model)
    in_channels = entry.defaults.get("in_channels", 1)
    classes = entry.defaults.get("classes", 2)
    if entry.fixed_size:
        kwargs.setdefault("img_size", size)  # the TransUNets' position embeddings fix the size
    start = time.perf_counter()
    try:
        with torch.device(device):
            net = create_model(model, in_channels=in_channels, classes=classes, **kwargs)
        gmacs = count_gmacs(net, (1, in_channels, size, size))
    except (NotImplementedError, RuntimeError):
        if device == "cpu":
            raise
        # a model that reads tensor values in forward cannot run on meta: count it for real
        return _measure(model, size, "cpu", **kwargs)
    default_encoder = inspect.signature(entry.builder).parameters.get("encoder_name")
    encoder = kwargs.get("encoder_name", default_encoder.default if default_encoder else "")
    return {
        "model": model,
        "encoder": encoder,
        "paper": entry.paper,
        "in_channels": in_channels,
        "classes": classes,
        "params": count_parameters(net),
        "paper_params": entry.paper_params,
        "gmacs": gmacs,
        "paper_gmacs": entry.paper_gmacs,
        "seconds": time.perf_counter() - start,
    }


def model_table(
    names: list[str] | None = None,
    size: int = 256,
    paper: str | None = None,
    encoders: bool = False,
    device: str = "meta",
) -> list[dict]:
    """Parameters and GMACs of registered models (all, or ``names``, or one ``paper``'s).

    Each model is built at its paper's ``in_channels``/``classes`` defaults and counted at
    one ``size x size`` image. ``encoders=True`` appends the EFA paper's encoder ablation
    (``unet`` with each encoder of ``ct_encoders.yaml``, with Table 3's figures). Models are
    built on the meta device (no memory, no arithmetic; the counts are the same) unless they
    cannot run there.
    """
    rows = [_measure(name, size, device) for name in (names or list_models(paper))]
    if encoders:
        from lightning_modules.nets.smp_models import ct_encoder_ablation

        for spec in ct_encoder_ablation()["encoders"]:
            row = _measure("unet", size, device, encoder_name=spec["encoder"])
            row.update(
                model=f"unet ({spec['label']})",
                paper_params=spec["paper_params_m"] * 1e6,
                paper_gmacs=spec["paper_gmacs"],
            )
            rows.append(row)
    return rows


def _millions(value: float | None) -> str:
    return "" if value is None else f"{value / 1e6:.2f}"


def _gmacs(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _delta(ours: float, paper: float | None) -> str:
    return "" if not paper else f"{100 * (ours - paper) / paper:+.1f}%"


def format_markdown(rows: list[dict]) -> str:
    """The table as Markdown: ours beside the paper's figures, with the relative difference."""
    lines = [
        "| model | encoder | paper | params | params (M) | paper (M) | diff | GMACs | paper GMACs "
        "| diff |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['encoder'] or ''} | {r['paper']} | {r['params']:,} "
            f"| {_millions(r['params'])} | {_millions(r['paper_params'])} "
            f"| {_delta(r['params'], r['paper_params'])} | {_gmacs(r['gmacs'])} "
            f"| {_gmacs(r['paper_gmacs'])} | {_delta(r['gmacs'], r['paper_gmacs'])} |"
        )
    return "\n".join(lines) + "\n"


def write_markdown(rows: list[dict], path: str | Path) -> Path:
    """Write :func:`format_markdown` to ``path`` (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_markdown(rows))
    return path


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write the rows with the :data:`COLUMNS` header (params as counts, GMACs in 1e9)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def cli(argv: list[str] | None = None) -> int:
    """``ptx model-table``: print the table, write ``model_table.md`` and ``.csv``."""
    from experiments.cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="ptx model-table", description=__doc__.split("\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--models", nargs="+", metavar="NAME", help="registered model names")
    parser.add_argument("--paper", choices=("ct", "xray"), help="only one paper's models")
    parser.add_argument(
        "--encoders", action="store_true", help="add the EFA encoder ablation (Table 3)"
    )
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models or ()) - set(list_models()))
    if unknown:
        parser.error(f"unknown models {unknown}; registered: {', '.join(list_models())}")
    start = time.perf_counter()
    rows = model_table(args.models, size=args.size, paper=args.paper, encoders=args.encoders)
    print(format_markdown(rows))
    md = write_markdown(rows, args.out / "model_table.md")
    csv_path = write_csv(rows, args.out / "model_table.csv")
    print(f"{len(rows)} models in {time.perf_counter() - start:.1f} s; wrote {md} and {csv_path}")
    return 0
