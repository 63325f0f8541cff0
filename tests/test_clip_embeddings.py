"""Embedding writer: class-name sources and cleaning, template averaging, files (no PyTorch)."""
import json

import numpy as np
import pytest

import unidetector  # noqa: F401
from unidetector.cli import main
from unidetector.text.embeddings import encode_class_names, load_embeddings, save_embeddings
from unidetector.text.vocab import clean_class_name, load_class_names
from unidetector.text.templates import TEMPLATE_SETS, TEMPLATES


def test_templates_are_the_official_81():
    assert len(TEMPLATES) == 81 and TEMPLATES[0] == "{}." and TEMPLATES[1] == "a photo of a {}."
    assert TEMPLATES[-1] == "a tattoo of the {}." and len(set(TEMPLATES)) == 81
    assert TEMPLATE_SETS["many"] is TEMPLATES


def test_class_names_sorted_by_id_and_cleaned(tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"categories": [
        {"id": 7, "name": "baseball_bat"}, {"id": 2, "name": "hot+dog"}, {"id": 5, "name": "Cigar/Cigarette, big"}]}))
    assert load_class_names(ann=ann) == ["hot dog", "Cigar/Cigarette big", "baseball_bat"]
    names = tmp_path / "names.txt"
    names.write_text("cat\n\n  red star \n")
    assert load_class_names(names_file=names) == ["cat", "red star"]
    assert load_class_names(classes="cat, dog,") == ["cat", "dog"]
    assert clean_class_name("a,b+c_d") == "ab c_d"
    with pytest.raises(ValueError):
        load_class_names(classes="a", ann=ann)


def test_encode_is_unnormalised_mean_over_templates():
    calls = []

    def fake_encode(prompts):
        calls.append(prompts)
        return np.array([[len(p), 1.0] for p in prompts])

    emb = encode_class_names(["cat", "hot dog"], fake_encode, ["a {}", "the big {}."])
    assert calls == [["a cat", "the big cat."], ["a hot dog", "the big hot dog."]]
    np.testing.assert_allclose(emb, [[(5 + 12) / 2, 1], [(9 + 16) / 2, 1]])
    assert emb.dtype == np.float32


def test_embedding_files_float16_and_row_count(tmp_path):
    emb = np.random.default_rng(0).standard_normal((3, 8)) * 10
    p16 = save_embeddings(tmp_path / "official_like.npy", emb, "float16")
    assert np.load(p16).dtype == np.float16
    got = load_embeddings(p16, num_classes=3)
    assert got.dtype == np.float32 and got.shape == (3, 8)
    np.testing.assert_allclose(got, emb.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="3 embedding rows but 4 classes"):
        load_embeddings(p16, num_classes=4)


def test_embed_command_synthetic(tmp_path, capsys):
    pytest.importorskip("unidetector.text.synthetic_encoder")
    out = tmp_path / "w.npy"
    assert main(["embed", "--classes", "red star,blue circle", "--encoder", "synthetic", "--dim", "16",
                 "--out", str(out)]) == 0
    emb = np.load(out)
    assert emb.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, rtol=1e-5)
    assert "2 classes x 16" in capsys.readouterr().out
