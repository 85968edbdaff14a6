import json

import pytest
import torch

from selfsup.errors import UserError
from selfsup.methods import create_method, list_methods
from selfsup.methods.rotation import rotate_four
from selfsup.models import create_backbone
from selfsup.pretrain import PretrainObjective, load_pretrained, pretrain
from selfsup.train import TrainConfig, fit


def _images(n=32, side=16):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, side, side, 3), dtype=torch.uint8, generator=g)


def test_resnet9_shapes_and_width():
    net = create_backbone("resnet9", width=0.125)
    x = torch.randn(2, 3, 64, 64)
    assert net.feature_map(x).shape == (2, 64, 8, 8) and net(x).shape == (2, 64)
    with pytest.raises(UserError, match="'resnet1000'"):
        create_backbone("resnet1000")


def test_rotation_views_are_balanced_and_correct():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).view(2, 3, 4, 4)
    views, labels = rotate_four(x)
    assert views.shape == (8, 3, 4, 4) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(views[2], torch.rot90(x[0], 1, dims=(1, 2)))


@pytest.mark.parametrize("method", list_methods())
def test_method_loss_falls_on_a_fixed_batch(method):
    torch.manual_seed(0)
    net = create_method(method, create_backbone("resnet9", width=0.125))
    objective = PretrainObjective(net, _images(16))
    cfg = TrainConfig(epochs=4, steps_per_epoch=5, batch_size=16, lr=3e-3, seed=0)
    history = fit(objective, 16, cfg)
    assert history[-1]["loss"] < history[0]["loss"]


class _Killed(Exception):
    pass


def test_resume_after_a_kill_ends_with_the_same_parameters(tmp_path):
    cfg = TrainConfig(epochs=3, steps_per_epoch=3, batch_size=8, seed=5)

    def make():
        torch.manual_seed(0)
        return PretrainObjective(create_method("rotation", create_backbone("resnet9", width=0.125)), _images())

    straight = make()
    fit(straight, 32, cfg)

    ckpt = tmp_path / "checkpoint.pt"
    interrupted = make()

    def die_after_first_epoch(epoch, logs):
        if epoch == 1:
            raise _Killed
    with pytest.raises(_Killed):
        fit(interrupted, 32, cfg, on_epoch=die_after_first_epoch, checkpoint=ckpt)
    torch.manual_seed(123)  # the resumed process starts with other RNG state: the checkpoint must restore it
    resumed = make()
    history = fit(resumed, 32, cfg, checkpoint=ckpt, resume=True)
    assert len(history) == 3
    for (k, a), b in zip(straight.module.state_dict().items(), resumed.module.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_pretrain_writes_a_safetensors_backbone_that_loads(tiny_dataset, tmp_path):
    meta = pretrain("rotation", tiny_dataset, tmp_path / "rot", width=0.125, epochs=1, batch_size=16, progress=False)
    assert (tmp_path / "rot" / "backbone.safetensors").is_file()
    assert json.loads((tmp_path / "rot" / "meta.json").read_text())["method"] == "rotation"
    net, loaded = load_pretrained(tmp_path / "rot")
    assert loaded["dataset_hash"] == meta["dataset_hash"] and net.out_dim == 64
