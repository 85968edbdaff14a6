"""Probes and task metrics against independent references (scikit-learn, numpy)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier

from selfsup.evaluate.probe import fit_logistic, fit_ridge, knn_predict
from selfsup.evaluate.tasks.depth import depth_metrics
from selfsup.evaluate.tasks.segmentation import mean_iou, segmentation_metrics


def _blobs(n=120, d=8, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (classes, d))
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(0, 1.5, (n, d))).astype(np.float64), y


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_knn_matches_scikit_learn(metric, k):
    x, y = _blobs()
    q, _ = _blobs(40, seed=1)
    ref = KNeighborsClassifier(n_neighbors=k, weights="distance", metric=metric, algorithm="brute").fit(x, y)
    scores = knn_predict(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(q), 4, k, metric)
    assert np.array_equal(scores.argmax(1).numpy(), ref.predict(q))
    np.testing.assert_allclose((scores / scores.sum(1, keepdim=True)).numpy(), ref.predict_proba(q), atol=1e-9)


def test_knn_query_equal_to_a_training_point_takes_its_label():
    x, y = _blobs(30)
    scores = knn_predict(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(x[:5]), 4, 20, "euclidean")
    assert np.array_equal(scores.argmax(1).numpy(), y[:5])


@pytest.mark.parametrize("c", [0.1, 1.0])
def test_logistic_probe_matches_scikit_learn(c):
    x, y = _blobs()
    ref = LogisticRegression(C=c, tol=1e-10, max_iter=5000).fit(x, y)
    w, b = fit_logistic(torch.from_numpy(x), torch.from_numpy(y), 4, c)
    np.testing.assert_allclose(w.numpy(), ref.coef_, atol=1e-4)
    np.testing.assert_allclose(b.numpy(), ref.intercept_, atol=1e-4)
    assert np.array_equal((torch.from_numpy(x) @ w.t() + b).argmax(1).numpy(), ref.predict(x))


@pytest.mark.parametrize("alpha", [0.1, 10.0])
def test_ridge_probe_matches_scikit_learn(alpha):
    x, _ = _blobs()
    target = x @ np.arange(1, 9) * 0.1 + np.random.default_rng(2).normal(0, 0.1, len(x)) + 3
    ref = Ridge(alpha=alpha).fit(x, target)
    w, b = fit_ridge(torch.from_numpy(x), torch.from_numpy(target), alpha)
    np.testing.assert_allclose(w.numpy(), ref.coef_, atol=1e-8)
    assert float(b) == pytest.approx(ref.intercept_, abs=1e-8)


def test_mean_iou_matches_a_numpy_confusion_matrix():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, (6, 8, 8))
    pred = np.where(rng.random(y.shape) < 0.7, y, rng.integers(0, 5, y.shape))
    pred[pred == 4] = 3  # class 4 is never predicted, only labelled
    cm = np.zeros((11, 11))
    np.add.at(cm, (y.ravel(), pred.ravel()), 1)
    inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    ref = np.mean(inter[union > 0] / union[union > 0])
    assert mean_iou(torch.from_numpy(pred), torch.from_numpy(y)) == pytest.approx(ref)


def test_depth_metrics_match_numpy_on_object_cells_and_on_all():
    rng = np.random.default_rng(1)
    t = rng.uniform(1, 4, (5, 8, 8))
    obj = rng.random(t.shape) < 0.3
    p = t * rng.uniform(0.7, 1.4, t.shape)
    m = depth_metrics(torch.from_numpy(p).unsqueeze(1), torch.from_numpy(np.stack([t, obj], 1)))
    for suffix, sel in (("", obj), ("_all", np.ones_like(obj))):
        pt, tt = p[sel], t[sel]
        assert m[f"delta1{suffix}"] == pytest.approx(np.mean(np.maximum(pt / tt, tt / pt) < 1.25))
        assert m[f"abs_rel{suffix}"] == pytest.approx(np.mean(np.abs(pt - tt) / tt))
        assert m[f"l1{suffix}"] == pytest.approx(np.mean(np.abs(pt - tt)))


def _scene_like_maps(rng, n=20, side=16):
    """Dense labels shaped like the multi set's: a backdrop at ≈ 3 (90 % of the cells) and a few objects
    nearer the camera (1.2–2.2), each object cell with a class 1–10."""
    seg = np.zeros((n, side, side), np.int64)
    depth = 3.0 + rng.normal(0, 0.05, seg.shape)
    for i in range(n):
        for _ in range(3):
            r, c, s = rng.integers(0, side - 3), rng.integers(0, side - 3), rng.integers(2, 4)
            seg[i, r : r + s, c : c + s] = rng.integers(1, 11)
            depth[i, r : r + s, c : c + s] = rng.uniform(1.2, 2.2)
    return seg, depth


def test_dense_headlines_measure_objects_and_a_constant_predictor_scores_near_its_chance_level():
    """The backdrop is ≈ 90 % of the cells: an all-background guess scores ≈ 0.9 pixel accuracy but 0 on
    the segmentation headlines; the head's initial depth (3.0, the backdrop's) scores δ1 ≈ 0.9 over all
    cells but ≈ 0 on objects; each task's chance level is what such a constant scores, and a good
    prediction is far above it."""
    from selfsup.evaluate.tasks import get_task

    seg, depth = _scene_like_maps(np.random.default_rng(0))
    y_seg = torch.from_numpy(seg)
    background = torch.nn.functional.one_hot(torch.zeros_like(y_seg), 11).permute(0, 3, 1, 2).float()
    m = segmentation_metrics(background, y_seg)
    assert m["pixel_accuracy"] > 0.8 and m["miou"] == 0.0 and m["object_accuracy"] == 0.0
    chance = get_task("segmentation").chance_metrics(seg)
    assert chance["miou"] == m["miou"] and chance["pixel_accuracy"] == pytest.approx(m["pixel_accuracy"])
    perfect = torch.nn.functional.one_hot(y_seg, 11).permute(0, 3, 1, 2).float()
    assert segmentation_metrics(perfect, y_seg)["miou"] == 1.0

    targets = np.stack([depth, seg > 0], 1).astype(np.float32)
    y = torch.from_numpy(targets)
    init = depth_metrics(torch.full((len(y), 1, 16, 16), 3.0), y)
    assert init["delta1_all"] > 0.8 and init["delta1"] < 0.05
    chance = get_task("depth").chance_metrics(targets)
    assert init["delta1"] <= chance["delta1"] < 0.9  # the best constant: still far from a real prediction
    good = depth_metrics(torch.from_numpy(depth * 1.05).unsqueeze(1).float(), y)
    assert good["delta1"] == 1.0 > chance["delta1"]


def test_image_level_chance_is_the_majority_class():
    from selfsup.evaluate.tasks import get_task

    y = np.array([0] * 6 + [1] * 3 + [2] * 1)
    assert get_task("classification").chance_metrics(y)["accuracy"] == pytest.approx(0.6)
    assert get_task("pose").chance_metrics(y)["accuracy"] == pytest.approx(0.6)
