import pytest
import torch
from torchvision.models.detection.ssd import SSDHead as TVSSDHead

from anchorage.core.registry import HEADS


def test_same_outputs_and_order_as_torchvision():
    torch.manual_seed(0)
    ref = TVSSDHead([8, 16], [4, 6], 4)
    head = HEADS.get("ssd_head").build(in_channels=(8, 16), num_anchors=(4, 6), num_classes=3)
    for i in range(2):
        head.cls_convs[i].load_state_dict(ref.classification_head.module_list[i].state_dict())
        head.box_convs[i].load_state_dict(ref.regression_head.module_list[i].state_dict())
    feats = {"a": torch.randn(2, 8, 5, 6), "b": torch.randn(2, 16, 3, 3)}
    out = head(feats)
    expected = ref(list(feats.values()))
    assert out["cls_logits"].shape == (2, 5 * 6 * 4 + 3 * 3 * 6, 4)
    assert torch.equal(out["cls_logits"], expected["cls_logits"])
    assert torch.equal(out["bbox_deltas"], expected["bbox_regression"])


def test_level_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same number of levels"):
        HEADS.get("ssd_head").build(in_channels=(8, 16), num_anchors=(4,), num_classes=3)
