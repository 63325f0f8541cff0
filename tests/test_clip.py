"""CLIP in Jittor against OpenAI's code: tokenizer, image tower (CLIPResNet + layer4 + attnpool =
encode_image) and text tower (= encode_text) on random full-size RN50 weights read back from a
``torch.jit.save`` archive by our PyTorch-free reader."""
import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
from clip_reference import load_reference
from unidetector.text.tokenizer import SimpleTokenizer, tokenize

TRICKY = [
    "a photo of a dog.",
    "Baseball_Bat, wooden+metal",
    "café crème brûlée — naïve résumé",
    "日本語のテキスト and emoji 🐶🚀",
    "   lots   of\twhite\nspace  ",
    "&amp; html &lt;escaped&gt; &quot;text&quot;",
    "it's they're we've I'm you'll he'd",
    "3.14159 + 2,718 = 5.86",
    "Cigar/Cigarette ",
    "",
]


def _reference_tokenize(ref_tok, texts, context_length=77, truncate=False):
    """``clip.tokenize`` (clip/clip.py) transcribed over the reference SimpleTokenizer."""
    sot, eot = ref_tok.encoder["<|startoftext|>"], ref_tok.encoder["<|endoftext|>"]
    out = np.zeros((len(texts), context_length), np.int64)
    for i, t in enumerate(texts):
        ids = [sot] + ref_tok.encode(t) + [eot]
        if len(ids) > context_length:
            assert truncate
            ids = ids[:context_length]
            ids[-1] = eot
        out[i, :len(ids)] = ids
    return out


def test_tokenizer_matches_openai():
    ref = load_reference("simple_tokenizer").SimpleTokenizer()
    ours = SimpleTokenizer()
    for text in TRICKY:
        assert ours.encode(text) == ref.encode(text), text
        assert ours.decode(ours.encode(text)) == ref.decode(ref.encode(text))
    np.testing.assert_array_equal(tokenize(TRICKY), _reference_tokenize(ref, TRICKY))


def test_tokenize_truncates_keeping_eot():
    long_text = " ".join(["word"] * 200)
    with pytest.raises(ValueError, match="too long"):
        tokenize(long_text)
    toks = tokenize([long_text, "short"], truncate=True)
    assert toks.shape == (2, 77) and toks.dtype == np.int64
    tok = SimpleTokenizer()
    assert toks[0, 0] == tok.sot_token and toks[0, -1] == tok.eot_token
    assert toks[0].argmax() == 76  # the EOT (largest id) is where encode_text reads the feature
    ref = load_reference("simple_tokenizer").SimpleTokenizer()
    np.testing.assert_array_equal(toks, _reference_tokenize(ref, [long_text, "short"], truncate=True))


def _randomise_batchnorms(model, torch):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.1 * torch.randn(n, generator=g)
            m.running_mean.data = 0.1 * torch.randn(n, generator=g)
            m.running_var.data = 0.5 + torch.rand(n, generator=g)


def _close(got, ref, rtol=2e-3):
    err = np.abs(got - ref).max()
    assert err <= rtol * np.abs(ref).max() + 1e-5, f"max |diff| {err:.3g} vs max |ref| {np.abs(ref).max():.3g}"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Converting a tensor to a Python boolean")
def test_full_rn50_image_and_text_towers_match_openai(tmp_path):
    """Random full-size RN50 (fp16 weights like OpenAI's RN50.pt) → torch.jit.script + save →
    our reader → Jittor; encode_image (224², one image) and encode_text (3 prompts) match."""
    ref = load_reference("model")
    import torch
    import jittor as jt

    from unidetector.convert import cast_floats, load_state_dict, read_checkpoint, split_openai_clip
    from unidetector.convert.checkpoints import clip_sizes, text_sizes
    from unidetector.models.backbones import CLIPResNet
    from unidetector.models.layers import AttentionPool2d
    from unidetector.models.roi_heads.shared_heads import CLIPResLayer
    from unidetector.text.clip_text import CLIPTextEncoder

    torch.manual_seed(0)
    model = ref.CLIP(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12).eval()
    _randomise_batchnorms(model, torch)
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    prompts = ["a photo of a dog.", "a bad photo of the baseball_bat.", "itap of my cat."]
    tokens = tokenize(prompts)
    ref.convert_weights(model)                 # fp16 conv/linear weights, as in OpenAI's RN50.pt
    path = tmp_path / "RN50.pt"
    with torch.no_grad():                      # OpenAI's archives are traced modules, too
        traced = torch.jit.trace_module(model, {"encode_text": torch.from_numpy(tokens[:1])}, check_trace=False)
    torch.jit.save(traced, str(path))
    model = model.float()

    sd = read_checkpoint(path)
    expected = {k: v.numpy() for k, v in model.state_dict().items()}
    assert sd["visual.conv1.weight"].dtype == np.float16
    assert set(expected) <= set(sd)
    for k in ("visual.layer1.0.downsample.0.weight", "visual.attnpool.q_proj.bias", "token_embedding.weight",
              "visual.bn1.running_var"):
        np.testing.assert_array_equal(sd[k].astype(np.float32), expected[k])

    det, text = split_openai_clip(sd)
    det, text = cast_floats(det), cast_floats(text)
    sizes = clip_sizes(det)
    assert sizes["layers"] == [3, 4, 6, 3] and sizes["width"] == 64
    assert sizes["attnpool"] == dict(spacial_dim=7, embed_dim=2048, num_heads=32, output_dim=1024)
    backbone = CLIPResNet(layers=sizes["layers"], width=64)
    layer4 = CLIPResLayer(layers=sizes["layers"], width=64)
    attnpool = AttentionPool2d(**sizes["attnpool"])
    for module, prefix in ((backbone, "backbone."), (layer4, "roi_head.shared_head."),
                           (attnpool, "roi_head.bbox_head.attnpool.")):
        rep = load_state_dict(module, det, strict=True, prefix=prefix)
        assert not rep.missing and not rep.unexpected
    encoder = CLIPTextEncoder(**text_sizes(text))
    assert text_sizes(text) == dict(embed_dim=1024, context_length=77, vocab_size=49408, transformer_width=512,
                                    transformer_heads=8, transformer_layers=12)
    load_state_dict(encoder, text, strict=True)

    with torch.no_grad():
        ref_img = model.encode_image(torch.from_numpy(image)).numpy()
        ref_txt = model.encode_text(torch.from_numpy(tokens)).numpy()
    with jt.no_grad():
        got_img = attnpool(layer4(backbone(jt.array(image))[0])).numpy()
        got_txt = encoder(jt.array(tokens)).numpy()
    _close(got_img, ref_img)
    _close(got_txt, ref_txt)
