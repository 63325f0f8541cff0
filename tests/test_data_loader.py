"""The Jittor batch loader: padding collate, aspect-ratio grouping, per-epoch reseeding."""
import numpy as np
import pytest

jt = pytest.importorskip("jittor")

from unidetector.data.loader import DetectionLoader, collate_detection  # noqa: E402


class FakeDataset:
    """Images of two aspect ratios; each item records its index in gt_labels."""

    def __init__(self, n=10):
        self.shapes = [(32, 48) if i % 3 else (40, 24) for i in range(n)]
        self.flag = np.array([1 if w / h > 1 else 0 for h, w in self.shapes], np.uint8)

    def __len__(self):
        return len(self.shapes)

    def __getitem__(self, i):
        h, w = self.shapes[i]
        return dict(img=np.full((3, h, w), i + 1, np.float32),
                    img_metas=dict(img_shape=(h, w, 3), dataset_id=i % 2),
                    gt_bboxes=np.array([[0, 0, 4, 4]], np.float32), gt_labels=np.array([i], np.int64))


def test_collate_pads_to_batch_max():
    ds = FakeDataset()
    b = collate_detection([ds[0], ds[1]])
    assert b["img"].shape == (2, 3, 40, 48)
    assert np.all(b["img"][0, :, :40, :24] == 1) and np.all(b["img"][0, :, :, 24:] == 0)
    assert b["img_metas"][1]["batch_input_shape"] == (40, 48) and len(b["gt_bboxes"]) == 2


def test_loader_groups_and_reseeds():
    ds = FakeDataset(10)
    loader = DetectionLoader(ds, batch_size=2, shuffle=True, seed=5)

    def epoch():
        out = []
        for batch in loader:
            assert isinstance(batch["img"], jt.Var)
            labels = [int(l.numpy()[0]) for l in batch["gt_labels"]]
            assert len({ds.flag[i] for i in labels}) == 1  # one aspect-ratio group per batch
            assert [m["dataset_id"] for m in batch["img_metas"]] == [i % 2 for i in labels]
            out.append(labels)
        return out

    e0, e1 = epoch(), epoch()
    assert sorted(sum(e0, [])) != [] and e0 != e1  # a new order each epoch
    loader2 = DetectionLoader(ds, batch_size=2, shuffle=True, seed=5)
    loader2.keep_numpy_targets = True
    assert [[int(x[0]) for x in b["gt_labels"]] for b in loader2] == e0  # same seed, same first epoch
    test = DetectionLoader(ds, batch_size=4, shuffle=False)
    assert [[int(x.numpy()[0]) for x in b["gt_labels"]] for b in test] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_worker_processes_give_the_same_batches():
    ds = FakeDataset(10)
    orders = []
    for workers in (0, 2):
        loader = DetectionLoader(ds, batch_size=2, shuffle=True, seed=3, num_workers=workers,
                                 keep_numpy_targets=True)
        orders.append([[[int(x[0]) for x in b["gt_labels"]] for b in loader] for _ in range(2)])
    assert orders[0] == orders[1] and orders[0][0] != orders[0][1]
