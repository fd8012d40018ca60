"""unet: any input size gives logits of that size; skips concatenate; it learns a toy mask."""

from __future__ import annotations

import torch

from anchorage.core import build_component


def _unet(**params: object) -> torch.nn.Module:
    return build_component("model", {"type": "unet", "num_classes": 2, **params})


def test_shapes_and_structure() -> None:
    model = _unet(base_channels=4, depth=3).eval()
    assert [m.in_channels for m in model.ups] == [32, 16, 8]  # transposed convs halve
    assert model.decoders[0][0][0].in_channels == 32  # 16 (skip) + 16 (upsampled)
    with torch.no_grad():
        out = model([torch.rand(3, 37, 50), torch.rand(3, 20, 21)])
    assert [tuple(o["sem_seg"].shape) for o in out] == [(3, 37, 50), (3, 20, 21)]
    assert all(torch.isfinite(o["sem_seg"]).all() for o in out)


def test_overfits_a_square() -> None:
    torch.manual_seed(0)
    model = _unet(base_channels=4, depth=2, tile_size=(24, 24)).train()
    mask = torch.zeros(24, 24, dtype=torch.int64)
    mask[6:14, 8:18] = 1
    mask[16:22, 2:8] = 2
    image = torch.stack([mask == 1, mask == 2, mask == 0]).float() + 0.1 * torch.rand(3, 24, 24)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    first = None
    for _ in range(40):
        loss = model([image], [{"semantic_mask": mask}])["loss_seg"]
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = model([image])[0]["sem_seg"].argmax(0)
    assert loss.item() < 0.5 * first
    assert (pred == mask).float().mean() > 0.9
