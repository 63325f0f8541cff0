"""COCO/O365/LVIS-style loading with the quirks of real files, proposals, transforms, bad inputs."""
import json
import pickle

import cv2
import numpy as np
import pytest

from unidetector.data import (CocoDataset, ConcatDataset, DatasetError, GroupSampler, LVISV1Dataset,
                              LVISV05Dataset, Objects365Dataset, ProposalFileError, check_embedding_rows)
from unidetector.data.transforms import (Compose, ImageLoadError, LoadProposals, RandomFlip, Resize,
                                         rescale_boxes_to_original)
from unidetector.registry import DATASETS, build

# image id -> (w, h); 13 is too small for training, 14 has no annotations, 15 only a crowd box
IMAGES = {11: (64, 48), 12: (40, 80), 13: (30, 50), 14: (50, 50), 15: (60, 40), 16: (48, 64)}
# categories listed out of id order, O365-style trailing spaces
CATEGORIES = [{"id": 7, "name": "Formula 1 "}, {"id": 2, "name": "Cigar/Cigarette "}, {"id": 5, "name": "cat"}]


def _ann(i, img, cat, bbox, **kw):
    x, y, w, h = bbox
    return dict(id=i, image_id=img, category_id=cat, bbox=list(bbox), area=kw.pop("area", w * h),
                iscrowd=kw.pop("iscrowd", 0), **kw)


ANNS = [
    _ann(1, 11, 7, (1, 2, 10, 20)),
    _ann(2, 11, 5, (5, 5, 30, 10)),
    _ann(3, 11, 2, (0, 0, 0.5, 10)),          # w < 1: dropped
    _ann(4, 11, 2, (10, 10, 5, 5), iscrowd=1),  # crowd -> ignore
    _ann(5, 12, 2, (3, 4, 20, 30)),
    _ann(6, 12, 5, (2, 2, 8, 8), area=0),     # area 0: dropped
    _ann(7, 13, 5, (1, 1, 10, 10)),
    _ann(8, 15, 7, (0, 0, 20, 20), iscrowd=1),
    _ann(9, 16, 5, (100, 100, 5, 5)),         # outside the image: dropped
    _ann(10, 16, 7, (4, 4, 30, 40)),
]


def make_coco(tmp_path, name="ann.json", lvis=False, images=True, extra=None):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir(exist_ok=True)
    imgs = []
    rng = np.random.default_rng(0)
    for iid, (w, h) in IMAGES.items():
        fname = f"{iid}.png"
        if images:
            cv2.imwrite(str(img_dir / fname), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        info = dict(id=iid, file_name=fname, width=w, height=h)
        if lvis:
            info.update(neg_category_ids=[], not_exhaustive_category_ids=[],
                        coco_url=f"http://images.cocodataset.org/imgs/{fname}")
        imgs.append(info)
    cats = [dict(c, frequency="f") if lvis else dict(c) for c in CATEGORIES]
    data = dict(images=imgs, annotations=[dict(a) for a in ANNS], categories=cats)
    if extra:
        extra(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path), str(img_dir)


PIPE = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
        dict(type="DefaultFormatBundle"), dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"])]


def test_loading_filtering_and_label_order(tmp_path):
    ann, img_dir = make_coco(tmp_path)
    ds = CocoDataset(ann, PIPE, img_prefix=img_dir, dataset_id=3)
    # labels follow category-id order, not json order
    assert ds.cat_ids == [2, 5, 7]
    assert ds.CLASSES == ("Cigar/Cigarette ", "cat", "Formula 1 ")
    # 13 (min side < 32) and 14 (no annotation) are filtered; 15 (crowd-only) is kept like mmdet
    assert [i["id"] for i in ds.data_infos] == [11, 12, 15, 16]
    info = ds.get_ann_info(0)
    np.testing.assert_array_equal(info["bboxes"], [[1, 2, 11, 22], [5, 5, 35, 15]])
    np.testing.assert_array_equal(info["labels"], [2, 1])
    np.testing.assert_array_equal(info["bboxes_ignore"], [[10, 10, 15, 15]])
    assert len(ds.get_ann_info(1)["bboxes"]) == 1  # area-0 box dropped
    np.testing.assert_array_equal(ds.get_ann_info(3)["bboxes"], [[4, 4, 34, 44]])  # outside box dropped
    np.testing.assert_array_equal(ds.flag, [1, 0, 1, 0])
    item = ds[0]
    assert item["img"].shape == (3, 48, 64) and item["img"].dtype == np.float32
    assert item["img_metas"]["dataset_id"] == 3
    # test mode keeps every image in json order
    test = CocoDataset(ann, [], img_prefix=img_dir, test_mode=True)
    assert [i["id"] for i in test.data_infos] == list(IMAGES)


def test_classes_exact_names_agnostic_and_registry(tmp_path):
    ann, img_dir = make_coco(tmp_path)
    ds = build(dict(type="Objects365Dataset", ann_file=ann, pipeline=[], img_prefix=img_dir,
                    classes=["Formula 1 ", "cat"], class_agnostic=False), DATASETS)
    assert isinstance(ds, Objects365Dataset) and ds.cat_ids == [5, 7]
    np.testing.assert_array_equal(ds.get_ann_info(0)["labels"], [1, 0])
    with pytest.raises(DatasetError, match=r"'Formula 1'.*json has 'Formula 1 '"):
        CocoDataset(ann, [], classes=["Formula 1", "cat"])
    agn = CocoDataset(ann, [], class_agnostic=True)
    assert agn.num_classes == 1 and set(agn.get_ann_info(0)["labels"]) == {0}


def test_embedding_row_check(tmp_path):
    ann, _ = make_coco(tmp_path)
    ds = CocoDataset(ann, [])
    emb = tmp_path / "emb.npy"
    np.save(emb, np.ones((4, 8), np.float16))
    with pytest.raises(DatasetError, match=r"emb.npy has 4 rows but dataset .*ann.json.* has 3 classes"):
        check_embedding_rows(str(emb), ds.num_classes, dataset=ds.ann_file)
    assert check_embedding_rows(np.ones((3, 8)), 3).dtype == np.float32


def test_bad_annotation_files(tmp_path):
    with pytest.raises(DatasetError, match="not found: .*missing.json"):
        CocoDataset(str(tmp_path / "missing.json"), [])
    ann, _ = make_coco(tmp_path, "bad.json", extra=lambda d: d["annotations"][1].pop("bbox"))
    with pytest.raises(DatasetError, match=r"bad.json: annotations\[1\] \(id=2\) lacks field\(s\) \['bbox'\]"):
        CocoDataset(ann, [])
    ann, _ = make_coco(tmp_path, "nocats.json", extra=lambda d: d.pop("categories"))
    with pytest.raises(DatasetError, match="nocats.json: missing top-level field"):
        CocoDataset(ann, [])


def test_missing_and_corrupt_images(tmp_path):
    ann, img_dir = make_coco(tmp_path)
    ds = CocoDataset(ann, PIPE, img_prefix=img_dir)
    (tmp_path / "imgs" / "11.png").write_bytes(b"not a png")
    with pytest.raises(ImageLoadError, match="corrupt.*11.png"):
        ds[0]
    (tmp_path / "imgs" / "12.png").unlink()
    with pytest.raises(ImageLoadError, match="not found.*12.png"):
        ds[1]


def _proposals(n_images):
    return [np.array([[i, i, i + 10, i + 12, 0.9], [0, 0, 5, 5, 0.5], [1, 1, 4, 4, 0.1]], np.float32)
            for i in range(n_images)]


def test_proposals_aligned_to_unfiltered_order(tmp_path):
    ann, img_dir = make_coco(tmp_path)
    pfile = tmp_path / "rp.pkl"
    props = _proposals(len(IMAGES))
    props[3] = np.zeros((0, 5), np.float32)
    pfile.write_bytes(pickle.dumps(props))
    pipe = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
            dict(type="LoadProposals", num_max_proposals=2), dict(type="DefaultFormatBundle"),
            dict(type="Collect", keys=["img", "proposals", "gt_bboxes", "gt_labels"])]
    ds = CocoDataset(ann, pipe, img_prefix=img_dir, proposal_file=str(pfile))
    # kept images are json indices 0, 1, 4, 5 -> proposals of those indices
    assert [float(p[0, 0]) for p in ds.proposals] == [0, 1, 4, 5]
    assert ds[2]["proposals"].shape == (2, 4)  # score dropped, top-2
    test = CocoDataset(ann, [dict(type="LoadImageFromFile"), dict(type="LoadProposals", load_score=True),
                             dict(type="DefaultFormatBundle"), dict(type="Collect", keys=["img", "proposals"])],
                       img_prefix=img_dir, proposal_file=str(pfile), test_mode=True)
    np.testing.assert_array_equal(test[3]["proposals"], [[0, 0, 0, 0, 0]])  # empty -> dummy box
    assert test[0]["proposals"].shape == (3, 5)
    pfile.write_bytes(pickle.dumps(props[:5]))
    with pytest.raises(ProposalFileError, match=r"rp.pkl has 5 entries but annotation file .*ann.json has 6 images"):
        CocoDataset(ann, [], proposal_file=str(pfile))


def test_resize_and_flip_move_boxes_and_proposals():
    img = np.zeros((40, 60, 3), np.uint8)
    res = dict(img=img, img_shape=img.shape, ori_shape=img.shape,
               gt_bboxes=np.array([[10, 5, 30, 25]], np.float32),
               proposals=np.array([[0, 0, 60, 40, 0.7], [6, 4, 12, 8, 0.2]], np.float32),
               bbox_fields=["gt_bboxes", "proposals"])
    np.random.seed(0)
    out = Resize(img_scale=[(120, 50), (120, 100)], multiscale_mode="range", keep_ratio=True)(dict(res))
    long_edge, short_edge = out["scale"]
    factor = min(long_edge / 60, short_edge / 40)
    h, w = out["img_shape"][:2]
    assert (w, h) == (int(60 * factor + 0.5), int(40 * factor + 0.5))
    sf = out["scale_factor"]
    np.testing.assert_allclose(out["gt_bboxes"], [[10 * sf[0], 5 * sf[1], 30 * sf[2], 25 * sf[3]]], rtol=1e-6)
    np.testing.assert_allclose(out["proposals"][:, 4], [0.7, 0.2])  # score column untouched
    np.testing.assert_allclose(out["proposals"][1, :4], [6 * sf[0], 4 * sf[1], 12 * sf[0], 8 * sf[1]], rtol=1e-6)
    out["flip"], out["flip_direction"] = True, "horizontal"
    flipped = RandomFlip(flip_ratio=0.5)(out)
    np.testing.assert_allclose(flipped["gt_bboxes"][0, [0, 2]], [w - 30 * sf[0], w - 10 * sf[0]], rtol=1e-5)
    np.testing.assert_allclose(flipped["proposals"][:, 4], [0.7, 0.2])
    meta = dict(flip=True, flip_direction="horizontal", img_shape=flipped["img_shape"], scale_factor=sf,
                ori_shape=(40, 60, 3))
    np.testing.assert_allclose(rescale_boxes_to_original(flipped["proposals"], meta)[:, :4],
                               [[0, 0, 60, 40], [6, 4, 12, 8]], atol=1e-4)


def test_full_pipeline_meta_and_normalise_pad(tmp_path):
    ann, img_dir = make_coco(tmp_path)
    pipe = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
            dict(type="Resize", img_scale=(100, 70), keep_ratio=True), dict(type="RandomFlip", flip_ratio=0.0),
            dict(type="Normalize", mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], to_rgb=True),
            dict(type="Pad", size_divisor=32), dict(type="DefaultFormatBundle"),
            dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"])]
    ds = CocoDataset(ann, pipe, img_prefix=img_dir, dataset_id=1)
    item = ds[0]
    m = item["img_metas"]
    assert m["ori_shape"] == (48, 64, 3) and m["img_shape"] == (70, 93, 3) and m["pad_shape"] == (96, 96, 3)
    assert m["flip"] is False and m["dataset_id"] == 1 and m["filename"].endswith("11.png")
    # mmcv resizes the uint8 BGR image, then Normalize converts to float and swaps to RGB
    resized = cv2.resize(cv2.imread(m["filename"]), (93, 70), interpolation=cv2.INTER_LINEAR)
    resized = resized[..., ::-1].astype(np.float32)
    np.testing.assert_allclose(item["img"][:, :70, :93], ((resized - [1, 2, 3]) / 2).transpose(2, 0, 1), atol=1e-4)
    assert np.all(item["img"][:, 70:, :] == 0) and np.all(item["img"][:, :, 93:] == 0)


def test_normalize_equals_the_broadcast_formula_bit_for_bit():
    """Normalize's row-wise arithmetic gives exactly mmcv's ``(float32(img) - mean) / std`` (RGB swap first)."""
    from unidetector.data.transforms import Normalize

    rng = np.random.default_rng(0)
    mean, std = [122.7709383, 116.7460125, 104.09373615], [68.5005327, 66.6321579, 70.32316305]
    for img in (rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), rng.normal(100, 50, (9, 7, 3)).astype(np.float32)):
        for to_rgb in (True, False):
            got = Normalize(mean, std, to_rgb)(dict(img=img.copy()))["img"]
            x = img.astype(np.float32)
            want = ((x[..., ::-1] if to_rgb else x) - np.float32(mean)) / np.float32(std)
            assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(got, want)


def test_load_proposals_rules():
    p = np.array([[0, 0, 1, 1, 0.9], [0, 0, 2, 2, 0.8]], np.float32)
    r = LoadProposals(num_max_proposals=1)(dict(proposals=p, bbox_fields=[]))
    np.testing.assert_array_equal(r["proposals"], [[0, 0, 1, 1]])
    assert r["bbox_fields"] == ["proposals"]
    r = LoadProposals(load_score=True)(dict(proposals=np.zeros((0, 5), np.float32), bbox_fields=[]))
    np.testing.assert_array_equal(r["proposals"], [[0, 0, 0, 0, 0]])


def test_lvis_file_names(tmp_path):
    ann, img_dir = make_coco(tmp_path, "lvis.json", lvis=True)
    v1 = LVISV1Dataset(ann, [], test_mode=True)
    assert v1.data_infos[0]["filename"] == "imgs/11.png"
    data = json.loads((tmp_path / "lvis.json").read_text())
    for img in data["images"]:
        img["file_name"] = f"COCO_val2014_{img['id']:012d}.jpg"
    (tmp_path / "lvis05.json").write_text(json.dumps(data))
    v05 = LVISV05Dataset(str(tmp_path / "lvis05.json"), [], test_mode=True)
    assert v05.data_infos[0]["filename"] == "000000000011.jpg"


def test_concat_keeps_dataset_ids_and_group_sampler(tmp_path):
    ann, img_dir = make_coco(tmp_path)
    a = dict(type="CocoDataset", ann_file=ann, pipeline=PIPE, img_prefix=img_dir)
    b = dict(type="Objects365Dataset", ann_file=ann, pipeline=PIPE, img_prefix=img_dir, dataset_id=5)
    cat = build(dict(type="ConcatDataset", datasets=[a, b]), DATASETS)
    assert len(cat) == 8 and list(cat.dataset_ids()) == [0] * 4 + [5] * 4
    assert cat[1]["img_metas"]["dataset_id"] == 0 and cat[6]["img_metas"]["dataset_id"] == 5
    s = GroupSampler(cat.flag, samples_per_gpu=3, seed=1)
    order = s.indices()
    assert len(order) == len(s) == 12
    for chunk in order.reshape(-1, 3):
        assert len(set(cat.flag[chunk])) == 1
    assert np.array_equal(order, GroupSampler(cat.flag, 3, seed=1).indices())
    s.set_epoch(1)
    assert not np.array_equal(order, s.indices())


def test_compose_rejects_unknown_transform():
    from unidetector.registry import ConfigError

    with pytest.raises(ConfigError, match=r"pipeline\[0\].type: 'Rezise' is not a registered transform"):
        Compose([dict(type="Rezise")])
