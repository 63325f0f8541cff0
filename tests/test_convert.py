"""PyTorch-free checkpoint reading and ``unidet convert`` (small generated checkpoints)."""
import pickle

import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
from unidetector.cli import main
from unidetector.convert import read_checkpoint

torch = pytest.importorskip("torch", reason="writing test checkpoints needs PyTorch: pip install -e '.[reference]'")


def _same(got: dict, ref: dict):
    assert list(got) == list(ref)
    for k, v in ref.items():
        v = v.numpy()
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v)


def test_reader_zip_legacy_and_mmdet_layouts(tmp_path):
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 6))
    m[2].weight.data = m[2].weight.data.half()
    sd = m.state_dict()
    sd["scalar"] = torch.tensor(3.5)                       # 0-d
    sd["strided"] = torch.arange(12.).reshape(3, 4).t()    # non-contiguous view
    sd["bf16"] = torch.arange(4.).bfloat16()
    torch.save(sd, tmp_path / "zip.pth")
    torch.save(sd, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({"state_dict": sd, "meta": {"epoch": 1}}, tmp_path / "mmdet.pth")
    sd_np = {k: (v.float() if v.dtype == torch.bfloat16 else v) for k, v in sd.items()}
    for name in ("zip.pth", "legacy.pth", "mmdet.pth"):
        _same(read_checkpoint(tmp_path / name), sd_np)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_reader_torchscript_archives(tmp_path):
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    torch.jit.save(torch.jit.script(m), str(tmp_path / "s.pt"))
    torch.jit.save(torch.jit.trace(m, torch.zeros(1, 3, 8, 8)), str(tmp_path / "t.pt"))
    for name in ("s.pt", "t.pt"):
        _same(read_checkpoint(tmp_path / name), m.state_dict())


def _mmdet_clip_checkpoint(width=8):
    """State dict of a reduced CLIP stage-2 detector with official mmdet names (from OpenAI's code)."""
    from clip_reference import detector_keys, load_reference

    ref = load_reference("model")
    torch.manual_seed(0)
    visual = ref.ModifiedResNet(layers=(1, 1, 1, 1), output_dim=16, heads=4, input_resolution=224, width=width)
    sd = detector_keys(visual.state_dict())
    sd["roi_head.bbox_head.fc_reg.weight"] = torch.randn(4, 16)
    sd["roi_head.bbox_head.fc_reg.bias"] = torch.zeros(4)
    sd["roi_head.bbox_head.zs_weights"] = torch.randn(16, 81)
    return sd


def test_convert_command_mmdet_checkpoint(tmp_path, capsys):
    sd = _mmdet_clip_checkpoint()
    torch.save({"state_dict": sd, "meta": {}}, tmp_path / "regionclip.pth")
    out = tmp_path / "regionclip.pkl"
    assert main(["convert", str(tmp_path / "regionclip.pth"), str(out)]) == 0
    text = capsys.readouterr().out
    assert "format mmdet" in text and "missing: 0" in text and "unexpected: 0" in text
    assert "num_batches_tracked" in text                         # ignored, and said so
    with open(out, "rb") as f:
        ckpt = pickle.load(f)
    assert ckpt["meta"]["format"] == "mmdet"
    for k, v in sd.items():
        np.testing.assert_array_equal(np.asarray(ckpt["state_dict"][k]).reshape(v.shape), v.numpy())

    # the converted file loads into the Jittor modules by official name
    from unidetector.convert import load_state_dict
    from unidetector.models.backbones import CLIPResNet
    rep = load_state_dict(CLIPResNet(layers=[1, 1, 1, 1], width=8), ckpt["state_dict"], prefix="backbone.",
                          strict=True)
    assert len(rep.loaded) > 10

    sd["backbone.layer2.0.conv1.weight"] = torch.randn(3, 32, 1, 1)   # wrong shape → error, nothing written
    torch.save({"state_dict": sd}, tmp_path / "broken.pth")
    assert main(["convert", str(tmp_path / "broken.pth"), str(tmp_path / "broken.pkl")]) == 1
    assert "backbone.layer2.0.conv1.weight" in capsys.readouterr().out
    assert not (tmp_path / "broken.pkl").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Converting a tensor to a Python boolean")
def test_convert_openai_clip_then_embed(tmp_path, capsys):
    """A small OpenAI-layout CLIP (TorchScript): convert splits visual/text; `unidet embed` with the
    text part reproduces OpenAI's encode_text averaged over the templates."""
    from clip_reference import load_reference
    from unidetector.text.tokenizer import tokenize

    ref = load_reference("model")
    torch.manual_seed(0)
    model = ref.CLIP(32, 64, (1, 1, 1, 1), 8, None, 77, 49408, 64, 1, 2).eval()
    path = tmp_path / "tiny_clip.pt"
    with torch.no_grad():
        traced = torch.jit.trace_module(model, {"encode_text": torch.from_numpy(tokenize("x"))}, check_trace=False)
    torch.jit.save(traced, str(path))
    out = tmp_path / "tiny.pkl"
    assert main(["convert", str(path), str(out)]) == 0
    report = capsys.readouterr().out
    assert "format openai-clip" in report and "text tower" in report
    assert (tmp_path / "tiny_text.pkl").exists()
    with open(out, "rb") as f:
        det = pickle.load(f)["state_dict"]
    assert "roi_head.shared_head.layer4.0.downsample.0.weight" in det
    assert "roi_head.bbox_head.attnpool.q_proj.weight" in det and "backbone.conv1.weight" in det

    npy = tmp_path / "emb.npy"
    assert main(["embed", "--classes", "cat,hot+dog", "--encoder", f"clip:{tmp_path / 'tiny_text.pkl'}",
                 "--out", str(npy)]) == 0
    from unidetector.text.templates import TEMPLATES
    with torch.no_grad():
        expected = np.stack([model.encode_text(torch.from_numpy(tokenize([t.format(n) for t in TEMPLATES])))
                             .mean(0).numpy() for n in ("cat", "hot dog")])
    got = np.load(npy)
    assert got.shape == (2, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
