"""Training curves to an image: loss, learning rate, temperature and eval metrics against the step.

Reads the ``train.jsonl`` / ``eval.jsonl`` of one or more ``anyclip train`` run folders (see
:mod:`anyclip.train.logs`) and draws them with matplotlib's Agg canvas (no display needed)::

    plot_runs(["logs/lr-1e-3", "logs/lr-5e-4"], "curves.png")   # one line per run, named by its folder
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..atomic import atomic_write
from .logs import is_number, read_log

TRAIN_PANELS = (("loss", "loss"), ("lr", "learning rate"), ("logit_scale", "logit scale (1 / temperature)"))


def _latest_history(records):
    """Records in step order as the run finally went: a resume that rewinds drops the abandoned tail, and
    records of one step are merged (the later wins), e.g. two evaluations logged at the same step."""
    kept = []
    for record in records:
        while kept and kept[-1]["step"] > record["step"]:
            kept.pop()
        if kept and kept[-1]["step"] == record["step"]:
            kept[-1] = {**kept[-1], **record}
        else:
            kept.append(record)
    return kept


def _read(path, required):
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"no {path.name} in {path.parent} (is it an `anyclip train` run folder?)")
        return []
    records = read_log(path)
    for record in records:
        if not is_number(record.get("step")):
            raise ValueError(f"{path}: a record without a numeric 'step': {str(record)[:120]}")
    if required and not records:
        raise ValueError(f"{path} has no records yet (a run logs every --log-every-n-steps steps)")
    return _latest_history(records)


def load_run(run) -> dict:
    """The curves of a run folder (or its ``train.jsonl``): ``{"name", "train": [...], "eval": [...]}``.

    Example:
        >>> load_run("logs/shapes")["train"][-1]["loss"]  # doctest: +SKIP
        0.41
    """
    run = Path(run)
    train_path = run if run.suffix == ".jsonl" and not run.is_dir() else run / "train.jsonl"
    if not train_path.parent.is_dir():
        raise FileNotFoundError(f"no run folder {train_path.parent}")
    return {"name": train_path.parent.resolve().name, "train": _read(train_path, True),
            "eval": _read(train_path.with_name("eval.jsonl"), False)}


def _eval_groups(runs):
    """``{group: [metric keys]}``: ``"shapes/shape/acc1"`` is ``acc1`` in group ``shapes/shape``; ranks
    (``val/image_retrieval_mean_rank``) get a panel of their own, away from the fractions (``val ranks``)."""
    groups = {}
    for run in runs:
        for record in run["eval"]:
            for key, value in record.items():
                if key not in ("step", "epoch") and is_number(value):
                    group = (key.rpartition("/")[0] or "eval") + (" ranks" if key.endswith("rank") else "")
                    groups.setdefault(group, [])
                    if key not in groups[group]:
                        groups[group].append(key)
    return groups


def _draw(ax, runs, kind, keys, title):
    styles = ("-", "--", ":", "-.")
    many = len(runs) > 1  # several runs: a colour per run and a line style per metric; else a colour per metric
    for r, run in enumerate(runs):
        for k, key in enumerate(keys):
            points = [(rec["step"], rec[key]) for rec in run[kind] if is_number(rec.get(key))]
            if not points:
                continue
            label = ([run["name"]] if many else []) + ([key.rpartition("/")[2]] if len(keys) > 1 else [])
            ax.plot(*zip(*points), color=f"C{(r if many else k) % 10}", linestyle=styles[k % 4] if many else "-",
                    marker="o" if kind == "eval" or len(points) == 1 else None, markersize=3,
                    label=": ".join(label) or None)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7)


def plot_runs(runs, out, title=None, dpi=100) -> Path:
    """Draw the curves of several runs into one figure (one line per run, named by its folder).

    The file is written atomically (a temporary file, then renamed); its format follows the suffix
    (``.png`` by default). Returns the path written.

    Example:
        >>> plot_runs(["logs/a", "logs/b"], "curves.png")  # doctest: +SKIP
        PosixPath('curves.png')
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError('plotting training curves needs matplotlib: pip install "anyclip[train]"') from e
    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    if not runs:
        raise ValueError("plot_runs: give at least one run folder")
    runs = [load_run(run) for run in runs]
    panels = [("train", [key], name) for key, name in TRAIN_PANELS
              if any(is_number(rec.get(key)) for run in runs for rec in run["train"])]
    panels += [("eval", keys, keys[0] if len(keys) == 1 else group) for group, keys in _eval_groups(runs).items()]
    if not panels:
        raise ValueError(f"nothing to plot: no loss, lr, logit_scale or eval metric in "
                         f"{', '.join(run['name'] for run in runs)}")
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.5 * cols, 3.3 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (kind, keys, name) in enumerate(panels):
        _draw(fig.add_subplot(rows, cols, i + 1), runs, kind, keys, name)
    if title:
        fig.suptitle(title)
    out = Path(out)
    return atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix.lstrip(".").lower() or "png", dpi=dpi))


def plot_run(run, out, title=None, dpi=100) -> Path:
    """Draw one run's loss, learning rate, temperature and eval curves to ``out`` (see :func:`plot_runs`).

    Example:
        >>> plot_run("logs/shapes", "logs/shapes/curves.png")  # doctest: +SKIP
        PosixPath('logs/shapes/curves.png')
    """
    return plot_runs([run], out, title=title, dpi=dpi)


__all__ = ["load_run", "plot_run", "plot_runs"]
