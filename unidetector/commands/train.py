"""Train a detector from an mmdet 2.x config (mmdet ``tools/train.py``).

  unidet train CONFIG [--work-dir D] [--resume [CKPT]] [--cfg-options k=v ...]
                      [--accumulate-steps K] [--amp] [--seed S] [--no-validate]

Multi-process data parallel (Jittor MPI): ``mpirun -np N unidet train CONFIG ...``. The global batch is
``N x data.samples_per_gpu``; gradients are averaged over processes; rank 0 logs and writes
checkpoints. ``--resume`` without a path resumes from ``WORK_DIR/latest.pkl``.
"""
from __future__ import annotations

HELP = "train a detector from a config (epochs, checkpoints, resume, MPI)"


def add_arguments(parser):
    from ..config import DictAction

    parser.add_argument("config", help="config file (mmdet 2.x schema)")
    parser.add_argument("--work-dir", default=None, help="checkpoints and logs (default: cfg.work_dir or "
                        "work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                        help="resume from CKPT (default: WORK_DIR/latest.pkl)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                        help="override config entries, e.g. runner.max_epochs=1 data.samples_per_gpu=4")
    parser.add_argument("--accumulate-steps", type=int, default=1,
                        help="batches per optimizer step (gradient accumulation)")
    parser.add_argument("--amp", action="store_true", help="mixed precision with loss scaling (GPU: fp16; CPU: "
                        "bfloat16 convolutions where the processor has AMX / AVX-512-BF16, else fp32)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: cfg.seed or 0)")
    parser.add_argument("--no-validate", action="store_true", help="skip the per-epoch evaluation")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..config import load_config
    from ..engine.runner import train_from_config

    cfg = load_config(args.config, args.cfg_options)
    train_from_config(cfg, work_dir=args.work_dir, resume=args.resume, accumulate_steps=args.accumulate_steps,
                      amp=args.amp, seed=args.seed, validate=not args.no_validate, progress=not args.no_progress)
    return 0
