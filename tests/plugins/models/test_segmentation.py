"""semantic_segmentation: normalisation inside, per-image eval output, tiled eval, losses, aux
head; the random_crop transform (labels never interpolated)."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from anchorage.core import build_component
from anchorage.core.errors import DataError, SpecError
from anchorage.plugins.models.segmentation import SegmentationModel, SegmentationOptions
from anchorage.plugins.models.tiling import sliding_window

BACKBONE = {
    "type": "resnet18",
    "norm": "bn",
    "trainable_layers": 5,
    "return_layers": ["layer3", "layer4"],
}


class RampModel(SegmentationModel):
    """Output channel 0 = input channel 0 + row index within the processed tile."""

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = torch.arange(x.shape[-2], dtype=x.dtype).view(1, 1, -1, 1)
        return {"out": x[:, :2] + rows}


def _ramp_model(tile: tuple[int, int] | None) -> RampModel:
    # identity normalisation: the ramp sees the input as given
    options = SegmentationOptions(
        num_classes=1, tile_size=tile, tile_overlap=0.5, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)
    )
    return RampModel(options)


def test_random_crop_transform_keeps_labels_exact() -> None:
    torch.manual_seed(0)
    crop = build_component("transform", {"type": "random_crop", "size": [16, 12]})
    masks = [torch.randint(0, 4, (30, 40)), torch.randint(0, 4, (10, 9))]
    for m in masks:
        image = tv_tensors.Image(m.float().expand(3, -1, -1) / 10)  # image encodes its label
        instances = tv_tensors.Mask(torch.ones(1, *m.shape, dtype=torch.uint8))
        x, t = crop(image, {"semantic_mask": tv_tensors.Mask(m), "masks": instances})
        y = t["semantic_mask"]
        assert x.shape == (3, 16, 12) and y.shape == (16, 12) and y.dtype == torch.int64
        valid = y != 255
        torch.testing.assert_close(x[0][valid] * 10, y[valid].float())  # aligned, not resampled
        assert (t["masks"][0] == valid).all()  # instance masks padded with 0
        if m.shape[0] > 16:  # large image: a crop, no padding
            assert valid.all()
        else:  # small image: padded with ignore; the image with the mean colour
            assert (~valid).sum() == 16 * 12 - 10 * 9
            mean = torch.tensor([0.485, 0.456, 0.406])
            torch.testing.assert_close(x[:, ~valid], mean[:, None].expand(3, int((~valid).sum())))


def test_images_are_normalised_inside_before_padding() -> None:
    model = SegmentationModel(SegmentationOptions(num_classes=1, mean=(0.5, 0.5, 0.5)))
    seen = []
    model.predict = lambda x: seen.append(x) or {"out": x[:, :2]}
    model.eval()([torch.full((3, 4, 4), 0.5), torch.full((3, 2, 6), 0.5)])
    assert seen[0].shape == (2, 3, 4, 6) and (seen[0] == 0).all()  # padding is 0 too


def test_eval_tiles_large_images_and_returns_each_image_at_its_size() -> None:
    model = _ramp_model((8, 8)).eval()
    big = torch.rand(3, 20, 13)
    (out,) = model([big])
    expected = sliding_window(lambda t: model.predict(t)["out"], big[None], (8, 8), (4, 4))
    torch.testing.assert_close(out["sem_seg"], expected[0])
    assert not torch.allclose(out["sem_seg"], model.predict(big[None])["out"][0])  # tiles differ
    whole = _ramp_model((20, 16)).eval()  # tiles larger than the image: one pass
    torch.testing.assert_close(whole([big])[0]["sem_seg"], model.predict(big[None])["out"][0])
    small = [torch.rand(3, 6, 5), torch.rand(3, 8, 7)]
    out = model(small)
    assert [tuple(o["sem_seg"].shape) for o in out] == [(2, 6, 5), (2, 8, 7)]
    torch.testing.assert_close(out[0]["sem_seg"], model.predict(small[0][None])["out"][0])


def test_fcn_model_losses_aux_and_eval_shape() -> None:
    torch.manual_seed(0)
    model = build_component(
        "model",
        {
            "type": "semantic_segmentation",
            "num_classes": 3,
            "backbone": BACKBONE,
            "head": {"type": "fcn_head"},
            "aux_head": {"type": "tv_fcn_head"},
            "aux_weight": 0.4,
            "tile_size": [64, 64],
        },
    )
    assert model.head.cfg.in_feature == "c5" and model.head.cfg.stride == 32
    assert model.aux_head.cfg.in_feature == "c4" and model.aux_head.cfg.in_channels == 256
    images = [torch.rand(3, 50, 70), torch.rand(3, 90, 80)]
    targets = [{"semantic_mask": torch.randint(0, 4, im.shape[1:])} for im in images]
    losses = model.train()(images, targets)
    assert set(losses) == {"loss_seg", "loss_aux"}
    sum(losses.values()).backward()
    assert model.backbone.body.conv1.weight.grad is not None
    with torch.no_grad():
        out = model.eval()(images)
    assert [tuple(o["sem_seg"].shape) for o in out] == [(4, 50, 70), (4, 90, 80)]
    assert all(torch.isfinite(o["sem_seg"]).all() for o in out)
    with pytest.raises(DataError, match="semantic_mask"):
        model.train()(images, [{}, {}])


def test_unknown_feature_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="c9"):
        build_component(
            "model",
            {
                "type": "semantic_segmentation",
                "num_classes": 1,
                "backbone": BACKBONE,
                "head": {"type": "fcn_head"},
                "feature": "c9",
            },
        )


@pytest.mark.parametrize("name", ["fcn_r18_shapes.yaml", "unet_shapes.yaml"])
def test_shapes_specs_build(name: str) -> None:
    from anchorage.core import build_model, load_spec

    spec = load_spec(name)
    model = build_model(spec)
    assert model.cfg.num_classes == 3 and spec.section("eval").metrics[0].type == "seg_miou"
