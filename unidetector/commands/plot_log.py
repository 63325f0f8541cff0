"""Plot loss curves of a training log.

  unidet plot-log work_dir/log.jsonl --out curves.png [--keys loss loss_cls lr]
"""
from __future__ import annotations

HELP = "draw loss/lr curves of a work_dir/log.jsonl into a PNG"


def add_arguments(parser):
    parser.add_argument("log", help="log.jsonl written by `unidet train`")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--keys", nargs="+", default=None, help="keys to plot (default: losses and lr)")


def run(args) -> int:
    from ..plot_log import plot_log

    keys = plot_log(args.log, args.out, keys=args.keys)
    print(f"{args.out}: {', '.join(keys)}")
    return 0
