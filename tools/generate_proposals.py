#!/usr/bin/env python
"""Seed command kept for its users: stage-1 proposals, two forms.

  python tools/generate_proposals.py --config CFG --checkpoint CKPT --output-dir DIR \\
      [--datasets coco objects365 lvis] [--cfg-options ...]
      The seed README's form. CFG's ``proposal_datasets`` names the datasets (e.g.
      configs/mixed_mode_coco_objects365_1ststage_rpn.py: coco, objects365, lvis); each name points at the
      data entry of the config that reads the proposals, which gives the annotation file, the image folder
      and the proposal file name, written inside DIR (coco -> DIR/rp_train_0.pkl, objects365 ->
      DIR/rp_train_1.pkl, lvis -> DIR/rp_val_ow.pkl). Without --datasets: all of them.
  python tools/generate_proposals.py --config CFG --checkpoint CKPT --ann A.json --img-dir IMGS --out rp.pkl \\
      [--ann ... --img-dir ... --out ...] [...]
      == unidet proposals CFG CKPT --ann ... --img-dir ... --out ... (other flags passed through).

``proposal_datasets`` entries: ``name=dict(config='stage2.py', data='train.datasets.0')`` (a config path
relative to CFG's folder and the key of its data entry under ``data``) or
``name=dict(ann_file=..., img_prefix=..., proposal_file=...)``. Each dataset is read with the consumer's
dataset type (e.g. LVISV05Dataset maps LVIS v0.5 file names to the val2017 images), so the pickle holds one
array per image of that file, in the order the consumer reads it.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

from _wrap import ToolError, load_tool_config, run_tool

PAIRED_FLAGS = ("--ann", "--img-dir", "--out")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/generate_proposals.py", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="stage-1 config")
    p.add_argument("--checkpoint", required=True, help="trained stage-1 checkpoint (.pkl)")
    p.add_argument("--output-dir", help="folder for the proposal files of --datasets")
    p.add_argument("--datasets", nargs="+", metavar="NAME",
                   help="names from the config's proposal_datasets (default: all of them)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides of CFG (also applied when reading its proposal_datasets)")
    return p


def translate(argv) -> list:
    """The ``unidet proposals`` command lines (a list of argv lists) for the seed's flags ``argv``."""
    p = build_parser()
    a, rest = p.parse_known_args(argv)
    head = ["proposals", a.config, a.checkpoint]
    opts = list(a.cfg_options)
    if a.output_dir is None and a.datasets is None:
        return [head + rest + (["--cfg-options", *opts] if opts else [])]
    if a.output_dir is None:
        p.error("--datasets needs --output-dir DIR (the folder the proposal files are written to)")
    if any(r.split("=", 1)[0] in PAIRED_FLAGS for r in rest):
        p.error("give either --output-dir/--datasets or --ann/--img-dir/--out, not both")
    commands = []
    for name, job in dataset_jobs(a.config, opts, a.datasets, a.output_dir):
        commands.append(head + ["--ann", job["ann_file"], "--img-dir", job["img_prefix"], "--out", job["out"], *rest,
                                "--cfg-options", f"data.test.type={job['type']}", *opts])
    return commands


def dataset_jobs(config: str, cfg_options, names, output_dir: str) -> list:
    """``[(name, dict(ann_file, img_prefix, out, type)), ...]`` for ``names`` (None: every dataset) of
    ``config``'s ``proposal_datasets``; ``out`` = ``output_dir/<file name the consumer reads>``.

    Raises :class:`ToolError` naming the config for a config without ``proposal_datasets``, an unknown
    name (the known ones listed) or an entry that does not give the three paths.
    """
    cfg = load_tool_config(config, cfg_options)
    table = cfg.get("proposal_datasets")
    if not table:
        raise ToolError(f"{config}: no proposal_datasets in this config, so --datasets/--output-dir cannot say which "
                        "files to run on; give --ann A.json --img-dir IMGS --out rp.pkl per dataset, or use "
                        "configs/mixed_mode_coco_objects365_1ststage_rpn.py")
    names = list(dict.fromkeys(names or table.keys()))  # order kept, repeats dropped
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ToolError(f"{config}: unknown dataset name(s) {', '.join(map(repr, unknown))} for --datasets "
                        f"(known in its proposal_datasets: {', '.join(table.keys())})")
    jobs = []
    for name in names:
        entry = resolve_entry(config, name, table[name])
        jobs.append((name, dict(ann_file=entry["ann_file"], img_prefix=entry["img_prefix"], type=entry["type"],
                                out=osp.join(output_dir, osp.basename(entry["proposal_file"])))))
    return jobs


def resolve_entry(config: str, name: str, entry) -> dict:
    """``dict(ann_file, img_prefix, proposal_file, type)`` of one ``proposal_datasets`` entry (``data_root``
    of the data entry applied, as the dataset does)."""
    where = f"{config}: proposal_datasets.{name}"
    if not hasattr(entry, "get"):
        raise ToolError(f"{where} must be a dict, got {entry!r}")
    if entry.get("config") is not None:
        sub_path = entry["config"] if osp.isabs(entry["config"]) else osp.join(osp.dirname(config), entry["config"])
        key = str(entry.get("data", "test"))
        node = load_tool_config(sub_path, None).get("data")
        for part in key.split("."):
            try:
                node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ToolError(f"{where}: {sub_path} has no data.{key}") from None
        where = f"{where} ({sub_path}, data.{key})"
        entry = node
    missing = [k for k in ("ann_file", "img_prefix", "proposal_file") if not entry.get(k)]
    if missing:
        raise ToolError(f"{where}: no {', '.join(missing)}")
    root = entry.get("data_root")
    join = (lambda p: p if not root or osp.isabs(p) else osp.join(root, p))
    return dict(ann_file=join(entry["ann_file"]), img_prefix=join(entry["img_prefix"]),
                proposal_file=entry["proposal_file"], type=entry.get("type", "CocoDataset"))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def prepare():
        commands = translate(argv)
        for cmd in commands:  # the output folders of the --output-dir form
            for i, flag in enumerate(cmd):
                if flag == "--out" and osp.dirname(cmd[i + 1]):
                    os.makedirs(osp.dirname(cmd[i + 1]), exist_ok=True)
        return commands

    return run_tool(prepare)


if __name__ == "__main__":
    sys.exit(main())
