"""Data checks before training/testing (unidetector.data.checks) and text-embedding file errors at model build."""
import json

import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
from unidetector.data import CocoDataset, ConcatDataset, check_embedding_rows
from unidetector.data.checks import (EmptyDatasetError, MissingImagesError, annotation_counts, check_dataset,
                                     check_model_vocabulary, leaf_datasets)
from unidetector.errors import UnidetError
from unidetector.text.embeddings import EmbeddingFileError, load_embeddings

IN_CH, DIM = 64, 16  # smallest CLIP head: RoI channels (one attention head of 64) and text-embedding dim


def write_coco(folder, name, images, anns, cats=((1, "cat"), (2, "dog")), make_files=True):
    """A COCO json ``folder/name.json`` and (``make_files``) a small file per image under ``folder/img``."""
    img_dir = folder / "img"
    img_dir.mkdir(exist_ok=True)
    data = dict(images=[dict(id=i, file_name=f"{name}_{i}.jpg", width=w, height=h) for i, w, h in images],
                annotations=[dict(id=k + 1, image_id=img, category_id=c, bbox=list(b), area=b[2] * b[3], **extra)
                             for k, (img, c, b, extra) in enumerate(anns)],
                categories=[dict(id=i, name=n) for i, n in cats])
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    if make_files:
        for i, _, _ in images:
            (img_dir / f"{name}_{i}.jpg").write_bytes(b"\xff\xd8 not decoded by the check")
    return str(path), str(img_dir)


def mixed_annotations(tmp_path):
    """Image 1 and 2 are 64x64, image 3 is 16x16 (dropped in training: < 32 px)."""
    images = [(1, 64, 64), (2, 64, 64), (3, 16, 16)]
    anns = [(1, 1, (4, 4, 20, 20), {}),                 # kept
            (1, 2, (10, 10, 30, 20), {}),               # kept
            (1, 99, (4, 4, 20, 20), {}),                # unknown category
            (2, 1, (4, 4, 0, 20), {}),                  # degenerate (w = 0)
            (2, 1, (4, 4, 0.5, 20), {}),                # degenerate (w < 1)
            (2, 2, (100, 100, 10, 10), {}),             # outside the image
            (2, 1, (4, 4, 20, 20), dict(iscrowd=1)),    # crowd: an ignored region
            (2, 1, (4, 4, 20, 20), dict(ignore=1)),     # ignore flag
            (77, 1, (4, 4, 20, 20), {}),                # unknown image id
            (3, 1, (1, 1, 8, 8), {})]                   # on an image dropped for its size
    return write_coco(tmp_path, "mixed", images, anns)


def test_dropped_annotations_are_counted_per_file(tmp_path):
    ann, img_dir = mixed_annotations(tmp_path)
    ds = CocoDataset(ann, [], img_prefix=img_dir)
    counts = annotation_counts(ds)
    assert counts == {"kept": 2, "unknown category": 1, "degenerate": 2, "outside the image": 1, "crowd": 1,
                      "ignore flag": 1, "unknown image": 1, "filtered image": 1}
    # the counts are what the loader does
    parsed = [ds.get_ann_info(i) for i in range(len(ds))]
    assert sum(len(p["labels"]) for p in parsed) == counts["kept"]
    assert sum(len(p["bboxes_ignore"]) for p in parsed) == counts["crowd"]
    lines = []
    check_dataset(ds, "data.train", progress=False, log=lines.append)
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith(f"data.train: {ann}: 2 of 3 images (0 without annotations of the classes, "
                           "1 smaller than 32 px)")
    assert ("annotations kept 2, dropped 7 (1 unknown category, 1 ignore flag, 2 degenerate (w or h < 1 px, or "
            "area <= 0), 1 outside the image, 1 of an unknown image id, 1 on dropped images), 1 crowd") in line


def test_one_line_per_annotation_file_of_a_concat_dataset(tmp_path):
    a, img_dir = write_coco(tmp_path, "a", [(1, 64, 64)], [(1, 1, (4, 4, 20, 20), {})])
    b, _ = write_coco(tmp_path, "b", [(1, 64, 64), (2, 64, 64)],
                      [(1, 2, (4, 4, 20, 20), {}), (2, 1, (4, 4, 20, 20), {}), (2, 5, (4, 4, 20, 20), {})])
    cat = ConcatDataset([CocoDataset(a, [], img_prefix=img_dir), CocoDataset(b, [], img_prefix=img_dir)])
    assert [k for k, _ in leaf_datasets(cat, "data.train")] == ["data.train.datasets[0]", "data.train.datasets[1]"]
    lines = []
    check_dataset(cat, "data.train", progress=False, log=lines.append)
    assert lines == [f"data.train.datasets[0]: {a}: 1 images; annotations kept 1, dropped 0",
                     f"data.train.datasets[1]: {b}: 2 images; annotations kept 2, dropped 1 (1 unknown category)"]


def test_missing_images_one_error_naming_each_file(tmp_path):
    a, img_dir = write_coco(tmp_path, "a", [(i, 64, 64) for i in range(1, 8)],
                            [(i, 1, (4, 4, 20, 20), {}) for i in range(1, 8)])
    b, _ = write_coco(tmp_path, "b", [(1, 64, 64), (2, 64, 64)], [(1, 1, (4, 4, 20, 20), {}), (2, 1, (4, 4, 9, 9), {})])
    for i in range(1, 8):
        (tmp_path / "img" / f"a_{i}.jpg").unlink()
    (tmp_path / "img" / "b_2.jpg").unlink()
    cat = ConcatDataset([CocoDataset(a, [], img_prefix=img_dir), CocoDataset(b, [], img_prefix=img_dir)])
    with pytest.raises(MissingImagesError) as err:
        check_dataset(cat, "data.train", progress=False, log=lambda *_: None)
    msg = str(err.value)
    assert isinstance(err.value, UnidetError) and "\n" not in msg
    assert f"data.train.datasets[0]: 7 of 7 images of {a} are missing under {img_dir}: {img_dir}/a_1.jpg" in msg
    assert "a_5.jpg, ..." in msg and "a_6.jpg" not in msg                      # the first few paths only
    assert f"data.train.datasets[1]: 1 of 2 images of {b} are missing" in msg and f"{img_dir}/b_2.jpg" in msg
    # a test set too, and a wrong img_prefix
    ds = CocoDataset(b, [], img_prefix=str(tmp_path / "nowhere"), test_mode=True)
    with pytest.raises(MissingImagesError, match=r"data.test: 2 of 2 images of .*b.json are missing under"):
        check_dataset(ds, "data.test", progress=False, log=lambda *_: None)


def test_test_set_report(tmp_path):
    ann, img_dir = mixed_annotations(tmp_path)
    lines = []
    check_dataset(CocoDataset(ann, [], img_prefix=img_dir, test_mode=True), "data.test", progress=False,
                  log=lines.append)
    # no image filter in test mode; the evaluation reads the json, the line says what the loader's rule drops
    assert lines == [f"data.test: {ann}: 3 images; annotations usable as boxes 3, not usable 6 (1 unknown "
                     "category, 1 ignore flag, 2 degenerate (w or h < 1 px, or area <= 0), 1 outside the image, "
                     "1 of an unknown image id), 1 crowd (ignored regions)"]


def test_training_set_without_usable_annotation_is_an_error(tmp_path):
    # every annotation of an unknown category: the mmdet filter leaves no image
    ann, img_dir = write_coco(tmp_path, "unknown", [(1, 64, 64), (2, 64, 64)],
                              [(1, 9, (4, 4, 20, 20), {}), (2, 9, (4, 4, 20, 20), {})])
    ds = CocoDataset(ann, [], img_prefix=img_dir)
    assert len(ds) == 0
    with pytest.raises(EmptyDatasetError, match=rf"data.train: {ann}: no image left for training of 2 \(2 without"):
        check_dataset(ds, "data.train", progress=False, log=lambda *_: None)
    # images stay (their annotations are of a selected category) but every box is degenerate
    ann, img_dir = write_coco(tmp_path, "degenerate", [(1, 64, 64)], [(1, 1, (4, 4, 0, 20), {})])
    ds = CocoDataset(ann, [], img_prefix=img_dir)
    assert len(ds) == 1
    with pytest.raises(EmptyDatasetError, match=r"degenerate.json: no usable annotation for training in its 1 "
                                                r"images \(dropped: 1 degenerate"):
        check_dataset(ds, "data.train", progress=False, log=lambda *_: None)
    # the same file is fine as a test set (evaluation reads the json)
    check_dataset(CocoDataset(ann, [], img_prefix=img_dir, test_mode=True), "data.test", progress=False,
                  log=lambda *_: None)
    # one empty member of a ConcatDataset is named
    good, _ = write_coco(tmp_path, "good", [(1, 64, 64)], [(1, 1, (4, 4, 20, 20), {})])
    cat = ConcatDataset([CocoDataset(good, [], img_prefix=img_dir), CocoDataset(ann, [], img_prefix=img_dir)])
    with pytest.raises(EmptyDatasetError, match=r"data.train.datasets\[1\]: .*degenerate.json"):
        check_dataset(cat, "data.train", progress=False, log=lambda *_: None)


def test_test_set_without_images_is_an_error(tmp_path):
    ann, img_dir = write_coco(tmp_path, "noimg", [], [])
    with pytest.raises(EmptyDatasetError, match=r"data.test: .*noimg.json: the annotation file lists no image"):
        check_dataset(CocoDataset(ann, [], img_prefix=img_dir, test_mode=True), "data.test", progress=False,
                      log=lambda *_: None)


# ---------------------------------------------------------------------------------------------- embeddings
def npy(tmp_path, name, rows, dim=DIM, seed=0):
    path = tmp_path / f"{name}.npy"
    np.save(path, np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32))
    return str(path)


def clip_head(path, num_classes=3, **kw):
    from unidetector.models.roi_heads.bbox_heads import BBoxHeadCLIP

    return BBoxHeadCLIP(in_channels=IN_CH, num_classes=num_classes, zeroshot_path=path, **kw)


def partitioned(paths, num_classes, **kw):
    from unidetector.models.roi_heads.bbox_heads import BBoxHeadCLIPPartitioned

    return BBoxHeadCLIPPartitioned(in_channels=IN_CH, num_classes=num_classes, zeroshot_path=paths, **kw)


def test_missing_embedding_file_says_how_to_make_it(tmp_path):
    path = str(tmp_path / "clip_embeddings" / "lvis_clip_a+cname_rn50_manyprompt.npy")
    with pytest.raises(EmbeddingFileError) as err:
        clip_head(path)
    msg = str(err.value)
    assert isinstance(err.value, UnidetError)
    assert f"text embedding file not found: {path}" in msg
    assert f"unidet embed --ann ANN.json --encoder clip:RN50.pt --out {path}" in msg and "clip_embeddings/" in msg
    with pytest.raises(EmbeddingFileError, match="not found"):
        partitioned([npy(tmp_path, "a", 3), path], 3)


def test_corrupt_embedding_file_is_named(tmp_path):
    bad = tmp_path / "truncated.npy"
    np.save(bad, np.ones((3, DIM), np.float32))
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(EmbeddingFileError, match=rf"{bad}: not a readable .npy array"):
        clip_head(str(bad))
    text = tmp_path / "text.npy"
    text.write_text("cat,dog\n")
    with pytest.raises(EmbeddingFileError, match=rf"{text}: not a readable .npy array"):
        clip_head(str(text))
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EmbeddingFileError, match=rf"{pickled}: not a readable"):
        load_embeddings(str(pickled))
    archive = tmp_path / "arch.npy"
    with open(archive, "wb") as f:
        np.savez(f, emb=np.ones((3, DIM)))
    with pytest.raises(EmbeddingFileError, match=rf"{archive}: an .npz archive"):
        load_embeddings(str(archive))


def test_non_finite_rows_name_the_file_row_and_class(tmp_path):
    emb = np.ones((3, DIM), np.float32)
    emb[1, 4] = np.nan
    emb[2, 0] = np.inf
    path = tmp_path / "nan.npy"
    np.save(path, emb)
    with pytest.raises(EmbeddingFileError, match=rf"{path}: row 1 \(class index 1, .*\) is not finite.*2 of 3 rows"):
        clip_head(str(path))
    with pytest.raises(EmbeddingFileError, match=r"row 1 \(class 'dog'\)"):
        check_embedding_rows(str(path), 3, class_names=("cat", "dog", "bird"))
    np.save(path, np.full((3, DIM), 1e6, np.float64) ** 8)  # finite float64, inf in float32
    with pytest.raises(EmbeddingFileError, match="row 0"):
        load_embeddings(str(path))


def test_wrong_row_count_or_dimension_at_model_build(tmp_path):
    path = npy(tmp_path, "five", 5)
    with pytest.raises(EmbeddingFileError, match=rf"{path} have 5 rows but the head has num_classes=3"):
        clip_head(path, num_classes=3)
    # the dimension the head fixes (attnpool.output_dim) must be the file's
    with pytest.raises(EmbeddingFileError, match=rf"{path} have dimension {DIM} but BBoxHeadCLIP's attnpool "
                                                 r"output_dim is 32"):
        clip_head(path, num_classes=5, attnpool=dict(output_dim=32))
    other = npy(tmp_path, "wide", 4, dim=DIM * 2)
    with pytest.raises(EmbeddingFileError, match=rf"different dimensions \({path}: {DIM}, {other}: {2 * DIM}\)"):
        partitioned([path, other], 5)
    with pytest.raises(EmbeddingFileError, match=r"num_classes=4 must equal the largest vocabulary"):
        partitioned([path, npy(tmp_path, "four", 4)], 4)
    # a head config built from an array (the open-world placeholder) still works
    assert clip_head(np.zeros((1, DIM), np.float32).tolist(), num_classes=1).zeroshot_files == ["<array>"]


def test_dataset_classes_must_match_the_embedding_rows(tmp_path):
    from types import SimpleNamespace

    a, img_dir = write_coco(tmp_path, "a", [(1, 64, 64)], [(1, 1, (4, 4, 20, 20), {})])  # 2 classes
    b, _ = write_coco(tmp_path, "b", [(1, 64, 64)], [(1, 3, (4, 4, 20, 20), {})],
                      cats=((1, "cat"), (2, "dog"), (3, "bird")))                     # 3 classes
    emb_a, emb_b = npy(tmp_path, "emb_a", 2), npy(tmp_path, "emb_b", 3)
    model = SimpleNamespace(roi_head=SimpleNamespace(bbox_head=partitioned([emb_a, emb_b], 3)))
    good = ConcatDataset([CocoDataset(a, [], img_prefix=img_dir), CocoDataset(b, [], img_prefix=img_dir)])
    check_dataset(good, "data.train", progress=False, log=lambda *_: None, model=model)
    swapped = ConcatDataset([CocoDataset(b, [], img_prefix=img_dir), CocoDataset(a, [], img_prefix=img_dir)])
    with pytest.raises(EmbeddingFileError, match=rf"data.train.datasets\[0\]: {b} has 3 classes but its text "
                                                 rf"embeddings {emb_a} have 2 rows"):
        check_dataset(swapped, "data.train", progress=False, log=lambda *_: None, model=model)
    # single-vocabulary head, e.g. a test set of another vocabulary
    single = SimpleNamespace(roi_head=SimpleNamespace(bbox_head=clip_head(emb_b, num_classes=3)))
    check_model_vocabulary(single, [("data.test", CocoDataset(b, [], img_prefix=img_dir, test_mode=True))])
    with pytest.raises(EmbeddingFileError, match=rf"data.test: {a} has 2 classes but its text embeddings {emb_b}"):
        check_dataset(CocoDataset(a, [], img_prefix=img_dir, test_mode=True), "data.test", progress=False,
                      log=lambda *_: None, model=single)
    # a model without a CLIP box head (stage 1) is not checked
    check_model_vocabulary(SimpleNamespace(), [("data.train", CocoDataset(a, [], img_prefix=img_dir))])
