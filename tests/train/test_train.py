import json

import pytest
import torch

from selfsup.core.errors import UserError
from selfsup.models import create_backbone
from selfsup.pretrain.checkpoint import load_pretrained
from selfsup.pretrain.methods import create_method, default_backbone, list_methods
from selfsup.pretrain.methods.rotation import rotate_four
from selfsup.pretrain.run import PretrainConfig, PretrainObjective, pretrain
from selfsup.train.loop import TrainConfig, fit


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


def _smooth_images(n=16, side=16):
    """Images with structure a tiny network can learn in a few steps: random 3×3 colour fields, upsampled."""
    low = torch.rand(n, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    up = torch.nn.functional.interpolate(low, size=side, mode="bilinear", align_corners=False)
    return (up * 255).round().byte().permute(0, 2, 3, 1).contiguous()


# queues smaller than the default: one fixed batch must not fill them with copies of its own positives
_TEST_KWARGS = {"cmc": {"queue_size": 0}, "moco": {"queue_size": 16}, "barlow": {"proj_dim": 32}}


@pytest.mark.parametrize("method", list_methods())
def test_method_loss_falls_on_a_fixed_batch(method):
    torch.manual_seed(0)
    net = create_method(method, create_backbone(default_backbone(method), width=0.125), **_TEST_KWARGS.get(method, {}))
    objective = PretrainObjective(net, _smooth_images(16))
    cfg = TrainConfig(epochs=6, steps_per_epoch=8, batch_size=16, lr=3e-3, seed=0)
    history = fit(objective, 16, cfg)
    assert history[-1]["loss"] < 0.95 * history[0]["loss"], [h["loss"] for h in history]


def test_momentum_targets_follow_the_online_network_and_queues_fill():
    torch.manual_seed(0)
    net = create_method("moco", create_backbone("resnet9", width=0.125), queue_size=24)
    before = [p.clone() for p in net.key_backbone.parameters()]
    fit(PretrainObjective(net, _smooth_images(16)), 16, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, seed=0))
    assert all(not p.requires_grad for p in net.key_backbone.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.key_backbone.parameters()))
    assert int(net.queue_ptr) == 32 % 24  # two batches of 16 written into a ring of 24
    cmc = create_method("cmc", create_backbone("resnet9_split", width=0.125), queue_size=40)
    for _ in range(3):
        cmc.loss(torch.randn(16, 3, 16, 16), torch.Generator().manual_seed(1))
    assert int(cmc.queue_filled) == 40 and int(cmc.queue_ptr) == 48 % 40
    with pytest.raises(UserError, match="resnet9_split"):
        create_method("cmc", create_backbone("resnet9", width=0.125))


class _Killed(Exception):
    pass


@pytest.mark.parametrize("method", ["rotation", "moco"])  # moco: momentum encoder and queue are state too
def test_resume_after_a_kill_ends_with_the_same_parameters(tmp_path, method):
    cfg = TrainConfig(epochs=3, steps_per_epoch=3, batch_size=8, seed=5)

    def make():
        torch.manual_seed(0)
        return PretrainObjective(create_method(method, create_backbone("resnet9", width=0.125)), _images())

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
    meta = pretrain(
        PretrainConfig("rotation", width=0.125, epochs=1, batch_size=16), tiny_dataset, tmp_path / "rot", progress=False
    )
    assert (tmp_path / "rot" / "backbone.safetensors").is_file()
    assert json.loads((tmp_path / "rot" / "meta.json").read_text())["method"] == "rotation"
    net, loaded = load_pretrained(tmp_path / "rot")
    assert loaded["dataset_hash"] == meta["dataset_hash"] and net.out_dim == 64


def test_pretrain_in_lab_with_an_online_probe_and_finetune_keeps_lab(tiny_dataset, tmp_path):
    from selfsup.evaluate.finetune import FinetuneConfig, finetune

    meta = pretrain(
        PretrainConfig("simclr", width=0.125, epochs=2, batch_size=16, colour="lab", online_probe=True),
        tiny_dataset,
        tmp_path / "lab",
        progress=False,
    )
    assert meta["colour"] == "lab" and 0.0 <= meta["probe_val_acc"] <= 1.0 and meta["ranks_in_sync"]
    net, _ = load_pretrained(tmp_path / "lab")
    assert net.colour == "lab"
    res = finetune(
        "classification",
        tiny_dataset,
        tmp_path / "ft",
        tmp_path / "lab",
        budgets=[20],
        seeds=[0],
        config=FinetuneConfig(steps=4, epochs=1, batch_size=8),
        progress=False,
    )
    assert set(res["colour"]) == {"lab"} and set(res["method"]) == {"simclr"}


def test_cmc_pretrains_its_split_backbone_by_default(tiny_dataset, tmp_path):
    meta = pretrain(
        PretrainConfig("cmc", width=0.125, epochs=1, batch_size=16), tiny_dataset, tmp_path / "cmc", progress=False
    )
    assert meta["backbone"] == "resnet9_split" and meta["colour"] == "lab"
    net, _ = load_pretrained(tmp_path / "cmc")
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, net.out_dim)


def test_torchrun_data_parallel_on_two_cpu_processes(tiny_dataset, tmp_path):
    """Two gloo ranks: rank 0 writes the files, the ranks end with identical parameters."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "ddp"
    bin_ = Path(sys.executable).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            str(bin_ / "torchrun"),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            "-m",
            "selfsup",
            "pretrain",
            "--method",
            "byol",
            "--data",
            str(tiny_dataset),
            "--out",
            str(out),
            "--width",
            "0.125",
            "--epochs",
            "2",
            "--batch-size",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["ranks_in_sync"] is True
    net, _ = load_pretrained(out)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 64)


@pytest.mark.slow  # compiling takes about a minute on 2 cores; run with `pytest -m slow`
def test_compiled_backbone_trains_and_saves_the_same_parameter_names(tiny_dataset, tmp_path):
    from safetensors.torch import load_file

    pretrain(
        PretrainConfig("rotation", width=0.125, epochs=1, batch_size=16, compile=True),
        tiny_dataset,
        tmp_path / "c",
        progress=False,
    )
    keys = set(load_file(tmp_path / "c" / "backbone.safetensors"))
    assert keys == set(create_backbone("resnet9", width=0.125).state_dict())


def test_a_rank_without_a_gpu_of_its_own_uses_gloo_on_the_cpu(monkeypatch):
    """NCCL only where CUDA sees a device for every local rank: two ranks on a one-GPU machine would
    otherwise fail with "invalid device ordinal" (rank 1) or join with different backends (issue 28)."""
    import torch

    from selfsup.train import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert distributed.backend() == "nccl" and distributed.device() == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks, one GPU: both on the CPU, both gloo
    for rank in ("0", "1"):
        monkeypatch.setenv("LOCAL_RANK", rank)
        assert distributed.backend() == "gloo" and distributed.device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.backend() == "nccl" and distributed.device() == torch.device("cuda", 1)
    # `finetune --shard` jobs started side by side with LOCAL_RANK each take their own GPU
    from selfsup.train.loop import default_device

    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert default_device() == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.backend() == "gloo" and distributed.device() == torch.device("cpu")
