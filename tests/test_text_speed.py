"""Text embeddings batched by token length (issue 23): each batch runs only up to its longest prompt,
and the result equals the full 77-token computation (ours and OpenAI's) on a tiny traced CLIP."""
import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
from clip_reference import load_reference
from unidetector.text.embeddings import CLIPPromptEncoder, encode_class_names, length_batches
from unidetector.text.templates import TEMPLATES
from unidetector.text.tokenizer import tokenize

# names of very different token lengths, so that length-sorted batches mix classes and templates
NAMES = ["cat", "hot dog", "Cigar/Cigarette big", "baseball_bat", "a very long name of an unusual thing indeed", "x"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(OpenAI CLIP module in PyTorch, path of its TorchScript archive): text width 128, 2 heads
    (width // 64, as OpenAI's checkpoints imply), 2 layers."""
    ref = load_reference("model")
    import torch

    torch.manual_seed(0)
    model = ref.CLIP(32, 64, (1, 1, 1, 1), 8, None, 77, 49408, 128, 2, 2).eval()
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.pt"
    with torch.no_grad():
        traced = torch.jit.trace_module(model, {"encode_text": torch.from_numpy(tokenize("x"))}, check_trace=False)
    torch.jit.save(traced, str(path))
    return model, path


def _full_length_reference(model, names, templates):
    import torch

    with torch.no_grad():
        return np.stack([model.encode_text(torch.from_numpy(tokenize([t.format(n) for t in templates])))
                         .mean(0).numpy() for n in names])


def test_length_batches_group_by_length_and_cover_every_prompt():
    lengths = np.array([9, 3, 9, 12, 3, 5, 12])
    batches = length_batches(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    assert [lengths[b].tolist() for b in batches] == [[3, 3, 5], [9, 9, 12], [12]]
    with pytest.raises(ValueError, match="batch_size"):
        length_batches(lengths, 0)


def test_batched_by_length_equals_full_77_tokens(tiny_clip, monkeypatch):
    model, path = tiny_clip
    import jittor as jt

    enc = CLIPPromptEncoder(path, batch_size=50)
    seen = []
    transformer = enc.model.transformer
    original = type(transformer).execute

    def spy(self, x, attn_mask=None):
        seen.append(tuple(x.shape))
        return original(self, x, attn_mask)

    monkeypatch.setattr(type(transformer), "execute", spy)
    got = encode_class_names(NAMES, enc.encode_text, TEMPLATES, progress=False)
    monkeypatch.undo()

    # every batch ran only up to its longest prompt, never the full context
    n_prompts = len(NAMES) * len(TEMPLATES)
    assert sum(s[0] for s in seen) == n_prompts and len(seen) == -(-n_prompts // 50)
    lengths = tokenize([t.format(n) for n in NAMES for t in TEMPLATES]).argmax(1) + 1
    assert [s[1] for s in seen] == [lengths[b].max() for b in length_batches(lengths, 50)]
    assert max(s[1] for s in seen) < 30

    # equals our own full 77-token computation and OpenAI's, row by row (class order kept)
    with jt.no_grad():
        full = np.stack([enc.model(jt.array(tokenize([t.format(n) for t in TEMPLATES])), trim=False).numpy().mean(0)
                         for n in NAMES])
    assert got.shape == (len(NAMES), 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, _full_length_reference(model, NAMES, TEMPLATES), rtol=1e-4, atol=1e-5)


def test_encoder_trims_jittor_and_numpy_tokens(tiny_clip):
    _, path = tiny_clip
    import jittor as jt

    enc = CLIPPromptEncoder(path)
    tokens = tokenize(["a photo of a cat.", "x", "a bad photo of the baseball_bat."])
    with jt.no_grad():
        full = enc.model(jt.array(tokens), trim=False).numpy()
        np.testing.assert_allclose(enc.model(tokens).numpy(), full, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(enc.model(jt.array(tokens)).numpy(), full, rtol=1e-5, atol=1e-6)


def test_generic_encoder_and_progress_bar(tiny_clip, capsys):
    """A plain callable is still called once per class; progress=True draws a bar with a count."""
    _, path = tiny_clip
    enc = CLIPPromptEncoder(path)
    calls = []

    def plain(prompts):
        calls.append(len(prompts))
        return enc.encode_text(prompts)

    a = encode_class_names(NAMES[:2], plain, TEMPLATES[:5], progress=True)
    assert calls == [5, 5]
    b = encode_class_names(NAMES[:2], enc.encode_text, TEMPLATES[:5], progress=True)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    err = capsys.readouterr().err
    assert "2/2" in err and "10/10" in err and "text embeddings" in err
