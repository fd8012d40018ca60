"""The single_shot specs' loss and postprocessor declare what their head really produces.

The skeleton hands the head's dict unchanged to the loss and the postprocessor; the
conformance kit feeds each component the layout it declares (``DenseLayout``). These
tests hold the declarations to the real head outputs of every dense family spec, so the
kit checks what the models run.
"""

import pytest
import torch

from anchorage.core import build_model, load_spec

SPECS = ["tiny_ssd_shapes", "yolo_shapes", "retinanet_r18_fpn_shapes", "fcos_r18_fpn_shapes"]


@pytest.mark.parametrize("name", SPECS)
def test_loss_and_postprocessor_layout_match_the_head(name, tmp_path):
    spec = load_spec(f"specs/{name}.yaml", [f"data.train.dataset.root={tmp_path}"])
    model = build_model(spec).eval()
    with torch.no_grad():
        out = model.head(model.features(torch.rand(1, 3, 128, 128)))
    b, a = out["bbox_deltas"].shape[:2]
    background = out["cls_logits"].shape[-1] - model.num_classes
    assert background in (0, 1)
    for part in (model.loss, model.postprocessor):
        declared = part.background_column(part.cfg)
        assert declared in (None, bool(background)), f"{type(part).__name__}: {declared}"
        for key, shape in part.extra_keys(part.cfg).items():
            assert key in out, f"{type(part).__name__} reads {key!r}, the head gives {sorted(out)}"
            assert tuple(out[key].shape) == (b, a, *shape), (key, tuple(out[key].shape), shape)
