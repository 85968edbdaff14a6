"""`selfsup pretrain --reuse` (what dvc.yaml runs, its outputs being persist): a finished backbone of the
same settings and training code is kept; other code or settings retrain in place; no error either way."""

import json

from selfsup.pretrain import run as pretrain_run
from selfsup.pretrain.run import PretrainConfig, pretrain

CONFIG = PretrainConfig("rotation", width=0.125, epochs=1, batch_size=16)


def test_reuse_keeps_a_backbone_of_the_same_code_and_retrains_another(tiny_dataset, tmp_path, monkeypatch):
    out = tmp_path / "rotation"
    first = pretrain(CONFIG, tiny_dataset, out, progress=False, register=False, reuse=True)
    assert not first.get("already_done") and json.loads((out / "meta.json").read_text())["code"]
    weights = (out / "backbone.safetensors").read_bytes()
    again = pretrain(CONFIG, tiny_dataset, out, progress=False, register=False, reuse=True)
    assert again.get("already_done") and (out / "backbone.safetensors").read_bytes() == weights
    # the training code changed (its source hash): trained again, without --replace
    monkeypatch.setattr(pretrain_run, "code_hash", lambda module, package=None: "another")
    third = pretrain(CONFIG, tiny_dataset, out, progress=False, register=False, reuse=True)
    assert not third.get("already_done") and json.loads((out / "meta.json").read_text())["code"] == "another"
    # other settings: trained again too (without reuse that is an error naming --replace)
    other = PretrainConfig("rotation", width=0.125, epochs=1, batch_size=16, seed=1)
    fourth = pretrain(other, tiny_dataset, out, progress=False, register=False, reuse=True)
    assert not fourth.get("already_done") and json.loads((out / "meta.json").read_text())["seed"] == 1
