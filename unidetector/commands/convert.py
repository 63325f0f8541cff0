"""Convert PyTorch / TorchScript weights to a Jittor checkpoint (.pkl), without PyTorch.

Formats (auto-detected):
  openai-clip         OpenAI CLIP ResNet (e.g. RN50.pt, TorchScript): visual.* -> backbone.*,
                      roi_head.shared_head.layer4.*, roi_head.bbox_head.attnpool.*; the text
                      tower goes to --text-out (default OUT_text.pkl), for `unidet embed`.
  mmdet               RegionCLIP / official UniDetector mmdet checkpoints (names kept).
  torchvision-resnet  torchvision ImageNet ResNet-50 -> backbone.* (stage 1; fc dropped).

The report says what the checkpoint is (stage-1, stage-2, end-to-end, CLIP initialisation, backbone)
and lists loaded / missing / unexpected keys and shape mismatches against our modules: the whole
detector of --config, else of the config stored in the checkpoint (meta['config'] of mmdet/mmcv
checkpoints), else the parts the weights are meant for. The model is built without its training-time
files (zeroshot_path embeddings, cat-info json). A shape mismatch is an error (exit 1), except for
zs_weights* text-embedding buffers.

The output keeps the checkpoint's meta (its config text and CLASSES included; --config replaces the
config), so `unidet detect --checkpoint OUT.pkl` needs no --config. Optimizer state is dropped.
"""
from __future__ import annotations

HELP = "convert OpenAI CLIP / RegionCLIP / UniDetector / torchvision weights to Jittor .pkl"

FORMATS = ("auto", "openai-clip", "mmdet", "torchvision-resnet")


def add_arguments(parser):
    parser.add_argument("input", help="checkpoint (.pt TorchScript, .pth/.pt state dict, or .pkl)")
    parser.add_argument("output", help="Jittor checkpoint to write (.pkl)")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: detect)")
    parser.add_argument("--text-out", help="openai-clip: where to write the text tower (default OUT_text.pkl)")
    parser.add_argument("--config", help="detector config to check every key against (default: the parts only)")
    parser.add_argument("--keep-fp16", action="store_true", help="store float16 weights as float16 (default float32)")


def _reference_module(fmt: str, sd: dict, cfg, source: str = "<config>"):
    """A Jittor module whose state dict the converted keys should match, and the key prefixes it covers:
    the detector of ``cfg`` (built without data files) when given, else the parts of the format."""
    from jittor import nn

    from ..registry import MODELS, build

    if cfg is not None:
        import unidetector.models  # noqa: F401  (registers the model types)
        from ..convert.checkpoints import region_embed_dim
        from ..models.roi_heads.bbox_heads.bbox_head_clip import without_data_files

        with without_data_files(region_embed_dim(sd)):
            return build(cfg.model, MODELS, key_path="model", filename=source), ("",)

    class Parts(nn.Module):
        pass

    root = Parts()
    if fmt == "torchvision-resnet" or "backbone.conv1.weight" in sd and sd["backbone.conv1.weight"].shape[-1] == 7:
        resnet = MODELS.get("ResNet")
        if resnet is None:
            return None, ()
        root.backbone = resnet(depth=50)
        return root, ("backbone.",)
    if "backbone.layer1.0.conv1.weight" not in sd:
        return None, ()
    from ..convert.checkpoints import clip_sizes
    from ..models.backbones import CLIPResNet
    from ..models.layers import AttentionPool2d
    from ..models.roi_heads.shared_heads import CLIPResLayer

    sizes = clip_sizes(sd)
    root.backbone = CLIPResNet(layers=sizes["layers"], width=sizes["width"])
    root.roi_head = Parts()
    prefixes = ["backbone."]
    if sizes["layers"][3]:
        root.roi_head.shared_head = CLIPResLayer(layers=sizes["layers"], width=sizes["width"])
        prefixes.append("roi_head.shared_head.")
    if "attnpool" in sizes:
        root.roi_head.bbox_head = Parts()
        root.roi_head.bbox_head.attnpool = AttentionPool2d(**sizes["attnpool"])
        prefixes.append("roi_head.bbox_head.attnpool.")
    return root, tuple(prefixes)


def _check(title: str, module, prefixes, sd) -> bool:
    from ..convert import match_state_dict

    print(f"== {title}")
    if module is None:
        print(f"  {len(sd)} keys written; no reference module to check them against (pass --config)")
        return True
    checked = {k: v for k, v in sd.items() if k.startswith(prefixes)}
    module_sd = {k: v for k, v in module.state_dict().items() if k.startswith(prefixes)}
    report = match_state_dict(module_sd, checked)
    print("  " + report.format().replace("\n", "\n  "))
    unchecked = [k for k in sd if not k.startswith(prefixes)]
    if unchecked:
        print(f"  not checked (outside {', '.join(prefixes)}; pass --config): {len(unchecked)} "
              f"[{', '.join(unchecked[:10])}{', ...' if len(unchecked) > 10 else ''}]")
    return not report.mismatched


def _config(args, meta):
    """``(cfg, source)`` to check the weights against: ``--config``, else the checkpoint's stored config,
    else ``(None, None)``."""
    from ..config import load_config
    from ..convert.checkpoints import stored_config

    if args.config:
        return load_config(args.config), args.config
    cfg = stored_config(meta, args.input)
    return (cfg, "the config stored in the checkpoint (meta['config'])") if cfg is not None else (None, None)


def run(args) -> int:
    from pathlib import Path

    import unidetector  # noqa: F401  (runtime bootstrap before jittor)
    from ..convert import cast_floats, detect_format, save_checkpoint, split_openai_clip
    from ..convert import torchvision_resnet_to_mmdet
    from ..convert.checkpoints import (CheckpointFileError, checkpoint_kind_message, describe_checkpoint,
                                       read_checkpoint_and_meta, text_sizes)

    sd, meta = read_checkpoint_and_meta(args.input)
    fmt = detect_format(sd) if args.format == "auto" else args.format
    dtype = None if args.keep_fp16 else "float32"
    text = None
    if fmt == "openai-clip":
        sd, text = split_openai_clip(sd)
    elif fmt == "torchvision-resnet":
        sd = torchvision_resnet_to_mmdet(sd)
    sd = cast_floats(sd, dtype)
    print(f"{args.input}: format {fmt}, {len(sd)} detector keys")
    kind = describe_checkpoint(args.input, sd)
    if kind:
        print(f"  {kind}")
    cfg, source = _config(args, meta)
    if cfg is not None:
        mismatch = checkpoint_kind_message(args.input, sd, cfg.model)
        if mismatch:
            raise CheckpointFileError(f"{mismatch} (the model of {source})")
        print(f"  checked against the whole model of {source}")
    module, prefixes = _reference_module(fmt, sd, cfg, source or "<config>")
    ok = _check("detector weights", module, prefixes, sd)
    out_meta = dict(meta)
    if args.config:
        out_meta["config"] = cfg.pretty_text
    out_meta.update(source=str(args.input), format=fmt)
    outputs = [args.output]
    if text is not None:
        from ..text.clip_text import CLIPTextEncoder

        text = cast_floats(text, dtype)
        ok = _check("text tower", CLIPTextEncoder(**text_sizes(text)), ("",), text) and ok
        text_out = args.text_out or str(Path(args.output).with_suffix("")) + "_text.pkl"
        outputs.append(text_out)
    if not ok:
        print("ERROR: shape mismatches (see above); nothing written")
        return 1
    save_checkpoint(args.output, sd, out_meta)
    if text is not None:
        save_checkpoint(text_out, text, dict(out_meta, part="text"))
    if fmt == "mmdet":
        kept = [k for k in ("config", "CLASSES", "text_encoder") if out_meta.get(k)]
        print("meta kept: " + (", ".join(kept) if kept else "none (the checkpoint carries no config: `unidet "
                                                            "detect` will need --config)"))
    print("wrote " + ", ".join(outputs))
    return 0
