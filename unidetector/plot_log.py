"""Loss curves from ``work_dir/log.jsonl`` drawn with matplotlib (Agg): ``unidet plot-log``.

One panel per key (default: every train key containing ``loss``, plus ``lr``), x = global iteration.
"""
from __future__ import annotations

import json
import math

import numpy as np

from .errors import UnidetError

COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
          "tab:olive", "tab:cyan"]


class LogFileError(UnidetError, ValueError):
    """A training log that cannot be read or drawn; the message names the file (and line)."""


def read_log(path) -> list:
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise LogFileError(f"{path}:{n}: not a JSON line ({e}); expected the log.jsonl of a training "
                                   "work dir") from None
    return records


def plot_log(path, out, keys=None, width=900, panel_height=260) -> list:
    """Write a PNG (``width`` × ``panel_height`` pixels per key, 100 dpi) of the curves of ``keys``;
    returns the keys drawn. Raises :class:`LogFileError` for a log without training records."""
    records = read_log(path)
    keys = log_keys(records, keys, path)
    fig = log_figure(records, keys, width / 100, panel_height / 100, dpi=100)
    fig.savefig(out, format="png")
    return keys


def log_keys(records: list, keys=None, path="log") -> list:
    """The keys to draw: ``keys`` that occur in the training records, by default every key containing ``loss``
    (``loss`` first, not ``loss_scale``) and ``lr``."""
    train = _train(records, path)
    if keys is None:
        keys = sorted({k for r in train for k in r if "loss" in k and k != "loss_scale"})
        keys = (["loss"] if "loss" in keys else []) + [k for k in keys if k != "loss"] + ["lr"]
    keys = [k for k in keys if any(k in r for r in train)]
    if not keys:
        raise LogFileError(f"{path}: none of the requested keys are in the log")
    return keys


def log_figure(records: list, keys: list, width_in: float = 9.0, panel_in: float = 2.6, dpi: int = 100):
    """One panel per key against the global iteration (shared x axis, round ticks); a noisy curve of more
    than 20 points also gets its moving average, named in a legend above the panels."""
    from matplotlib.lines import Line2D

    from .visualize import new_figure, round_ticks

    train = _train(records)
    fig = new_figure(width_in, panel_in * len(keys) + 0.3, dpi)
    axes = np.atleast_1d(fig.subplots(len(keys), 1, sharex=True, squeeze=False)).ravel()
    smoothed = False
    for p, (ax, key) in enumerate(zip(axes, keys)):
        pts = np.array([(r.get("global_iter", r.get("iter", i)), r[key]) for i, r in enumerate(train)
                        if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])], np.float64).reshape(-1, 2)
        color, smooth = COLORS[p % len(COLORS)], len(pts) > 20 and key != "lr"
        ax.plot(pts[:, 0], pts[:, 1], color=color, linewidth=1.0, alpha=0.45 if smooth else 1.0,
                marker="o" if len(pts) <= 1 else None, markersize=3)
        if smooth:
            n = max(5, len(pts) // 20)
            avg = np.convolve(pts[:, 1], np.ones(n) / n, mode="valid")
            ax.plot(pts[n - 1:, 0], avg, color=color, linewidth=2.0)
            smoothed = True
        ax.set_ylabel(key)
        round_ticks(ax.yaxis, nbins=5)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useMathText=True)
        ax.grid(color="0.9")
    round_ticks(axes[-1].xaxis, nbins=8, integer=True)
    axes[-1].set_xlabel("iteration")
    if smoothed:
        fig.legend(handles=[Line2D([], [], color="0.35", linewidth=1.0, alpha=0.45, label="per logged iteration"),
                            Line2D([], [], color="0.35", linewidth=2.0, label="moving average")],
                   loc="outside upper center", ncol=2, frameon=False, fontsize=9)
    return fig


def _train(records: list, path="log") -> list:
    train = [r for r in records if r.get("mode", "train") == "train"]
    if not train:
        raise LogFileError(f"{path}: no training records")
    return train
