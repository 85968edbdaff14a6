"""Probes and task metrics against independent references (scikit-learn, numpy)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier

from selfsup.probe import fit_logistic, fit_ridge, knn_predict
from selfsup.tasks.depth import depth_metrics
from selfsup.tasks.segmentation import mean_iou


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


def test_depth_metrics_match_numpy():
    rng = np.random.default_rng(1)
    t = rng.uniform(1, 4, (5, 8, 8))
    p = t * rng.uniform(0.7, 1.4, t.shape)
    m = depth_metrics(torch.from_numpy(p).unsqueeze(1), torch.from_numpy(t))
    assert m["delta1"] == pytest.approx(np.mean(np.maximum(p / t, t / p) < 1.25))
    assert m["abs_rel"] == pytest.approx(np.mean(np.abs(p - t) / t))
    assert m["l1"] == pytest.approx(np.mean(np.abs(p - t)))
