"""Convert PyTorch / TorchScript weights to a Jittor checkpoint (.pkl), without PyTorch.

Formats (auto-detected):
  openai-clip         OpenAI CLIP ResNet (e.g. RN50.pt, TorchScript): visual.* -> backbone.*,
                      roi_head.shared_head.layer4.*, roi_head.bbox_head.attnpool.*; the text
                      tower goes to --text-out (default OUT_text.pkl), for `unidet embed`.
  mmdet               RegionCLIP / official UniDetector mmdet checkpoints (names kept).
  torchvision-resnet  torchvision ImageNet ResNet-50 -> backbone.* (stage 1; fc dropped).

The report lists loaded / missing / unexpected keys and shape mismatches against our modules
(the whole detector with --config, else the parts the weights are meant for). A shape mismatch
is an error (exit 1), except for zs_weights* text-embedding buffers.
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


def _reference_module(fmt: str, sd: dict, config: str | None):
    """A Jittor module whose state dict the converted keys should match, and the key prefixes it covers."""
    from jittor import nn

    from ..registry import MODELS, build

    if config:
        import unidetector.models  # noqa: F401  (registers the model types)
        from ..config import load_config

        cfg = load_config(config)
        return build(cfg.model, MODELS, key_path="model", filename=config), ("",)

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


def run(args) -> int:
    from pathlib import Path

    import unidetector  # noqa: F401  (runtime bootstrap before jittor)
    from ..convert import cast_floats, detect_format, read_checkpoint, save_checkpoint, split_openai_clip
    from ..convert import torchvision_resnet_to_mmdet
    from ..convert.checkpoints import text_sizes

    sd = read_checkpoint(args.input)
    fmt = detect_format(sd) if args.format == "auto" else args.format
    dtype = None if args.keep_fp16 else "float32"
    text = None
    if fmt == "openai-clip":
        sd, text = split_openai_clip(sd)
    elif fmt == "torchvision-resnet":
        sd = torchvision_resnet_to_mmdet(sd)
    sd = cast_floats(sd, dtype)
    print(f"{args.input}: format {fmt}, {len(sd)} detector keys")
    module, prefixes = _reference_module(fmt, sd, args.config)
    ok = _check("detector weights", module, prefixes, sd)
    meta = {"source": str(args.input), "format": fmt}
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
    save_checkpoint(args.output, sd, meta)
    if text is not None:
        save_checkpoint(text_out, text, dict(meta, part="text"))
    print("wrote " + ", ".join(outputs))
    return 0
