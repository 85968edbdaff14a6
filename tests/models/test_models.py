import pytest
import torch

from selfsup.core.errors import UserError
from selfsup.data.augment import contrastive_view, cutout, finetune_view, flip_translate, resized_crop, to_input
from selfsup.data.colour import rgb_to_lab, to_colour
from selfsup.models import create_backbone, list_backbones


@pytest.mark.parametrize(
    "rgb,lab",
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),  # published sRGB → Lab (D65) values
        ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
        ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
        ((0.5, 0.5, 0.5), (53.39, 0.0, 0.0)),
    ],
)
def test_rgb_to_lab_matches_published_values(rgb, lab):
    out = rgb_to_lab(torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1)).view(3)
    torch.testing.assert_close(out, torch.tensor(lab, dtype=torch.float64), atol=0.02, rtol=0)


def test_lab_input_is_roughly_unit_scale():
    images = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    lab = to_colour(to_input(images), "lab")
    assert lab.shape == (8, 3, 16, 16) and lab.abs().max() < 2.5
    assert torch.equal(to_colour(to_input(images), "rgb"), to_input(images))


@pytest.mark.parametrize(
    "name,dim", [("resnet9", 64), ("resnet9_split", 64), ("resnet50", 256), ("resnet50_split", 256)]
)
@pytest.mark.parametrize("side", [64, 128])
def test_backbones_give_a_map_at_one_eighth_of_the_input(name, dim, side):
    net = create_backbone(name, width=0.125)
    x = torch.randn(2, 3, side, side)
    maps = net.stages(x)
    assert maps[-1].shape == (2, dim, side // 8, side // 8) and net(x).shape == (2, dim) == (2, net.out_dim)
    assert torch.equal(net.feature_map(x), maps[-1])


def test_registry_lists_backbones_and_rejects_bad_names():
    assert {"resnet9", "resnet9_split", "resnet50", "resnet50_split"} <= set(list_backbones())
    from selfsup.pretrain.methods import default_backbone

    # the pipeline names a family; CMC trains that family's split version
    assert [default_backbone(m, f) for m in ("cmc", "simclr") for f in ("resnet9", "resnet50")] == [
        "resnet9_split",
        "resnet50_split",
        "resnet9",
        "resnet50",
    ]
    with pytest.raises(UserError, match="'resnet1000'"):
        create_backbone("resnet1000")
    with pytest.raises(UserError, match="'hsv'"):
        create_backbone("resnet9", colour="hsv")


def test_lab_backbone_differs_from_rgb_only_in_its_input():
    torch.manual_seed(0)
    rgb = create_backbone("resnet9", width=0.125)
    lab = create_backbone("resnet9", width=0.125, colour="lab")
    lab.load_state_dict(rgb.state_dict())
    x = torch.randn(2, 3, 16, 16)
    rgb.eval(), lab.eval()
    torch.testing.assert_close(lab(x), rgb(to_colour(x, "lab")))


def test_augmentations_are_per_image_and_keep_shape():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(4 * 3 * 8 * 8, dtype=torch.float).view(4, 3, 8, 8)
    y = resized_crop(x, g)
    assert y.shape == x.shape and len({float(v) for v in y.mean((1, 2, 3))}) == 4
    z = cutout(torch.ones(16, 3, 8, 8), g, size=0.25, p=1.0)
    holes = (z == 0).all(1).flatten(1).sum(1)
    assert (holes > 0).all() and (holes <= 9).all()


@pytest.mark.parametrize("dense", [False, True])
def test_finetune_view_flips_dense_targets_with_their_image(dense):
    g = torch.Generator().manual_seed(0)
    b = 64
    # every image's left half is bright, so a flip shows as a brighter right half
    x = torch.zeros(b, 3, 32, 32)
    x[..., :16] = 2.0
    y = torch.arange(4).view(1, 1, 4).expand(b, 4, 4).clone() if dense else torch.arange(b)
    v, t = finetune_view(x, y, g, dense)
    assert v.shape == x.shape
    flipped = v[..., 24:].mean((1, 2, 3)) > v[..., :8].mean((1, 2, 3))
    assert 10 < int(flipped.sum()) < b - 10  # about half the images flipped, independently
    if dense:  # the targets' columns reversed exactly where the image was
        assert torch.equal(t[:, 0, 0] == 3, flipped)
    else:
        assert torch.equal(t, y)
        assert ((v == 0).all(1).flatten(1).sum(1) >= 16).all()  # an H/4 Cutout square in every image


def test_augmented_batches_stay_channels_last():
    # the networks run channels-last: a view that came back NCHW made every finetuning step with the
    # paper's augmentation ~60 % slower on this CPU (a memory-format conversion per convolution)
    g = torch.Generator().manual_seed(0)
    x = to_input(torch.randint(0, 255, (4, 16, 16, 3), dtype=torch.uint8))
    views = [finetune_view(x, torch.arange(4), g, dense=False)[0], finetune_view(x, torch.zeros(4, 2, 2), g, True)[0]]
    views += [contrastive_view(x, g, cut=True), flip_translate(x, 2, g), cutout(x, g)]
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in views)
