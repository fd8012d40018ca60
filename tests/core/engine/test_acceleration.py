"""train.amp / train.channels_last / train.compile (core/engine/acceleration.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from anchorage.core import Spec, build_model, load_spec
from anchorage.core.engine.acceleration import prepare_model, resolve_amp
from anchorage.core.engine.trainer import Trainer

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize(
    ("requested", "bf16", "expected", "noted"),
    [
        ("none", True, None, False),
        ("auto", True, torch.bfloat16, False),
        ("auto", False, torch.float16, False),
        ("bf16", True, torch.bfloat16, False),
        ("bf16", False, torch.float16, True),
        ("fp16", True, torch.float16, False),
    ],
)
def test_amp_dtype_on_cuda(monkeypatch, requested: str, bf16: bool, expected, noted: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    dtype, note = resolve_amp(requested, CUDA)
    assert dtype == expected and bool(note) == noted


def test_amp_is_off_on_cpu_with_a_note() -> None:
    assert resolve_amp("auto", CPU) == (
        None,
        "train.amp=auto applies on CUDA only; training in float32",
    )


def _tiny_ssd_batch() -> tuple[list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 96, 96, generator=g), torch.rand(3, 80, 112, generator=g)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12, 50, 60]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[5.0, 5, 40, 30], [30, 20, 90, 70]]),
            "labels": torch.tensor([2, 3]),
        },
    ]
    return images, targets


def test_channels_last_gives_the_same_loss_and_gradients() -> None:
    torch.manual_seed(0)
    spec = load_spec("specs/tiny_ssd_shapes.yaml")
    plain = build_model(spec)
    nhwc = build_model(spec)
    nhwc.load_state_dict(plain.state_dict())
    prepare_model(nhwc, channels_last=True)
    convs = [m.weight for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    images, targets = _tiny_ssd_batch()
    a, b = plain.train()(images, targets), nhwc.train()(images, targets)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    sum(a.values()).backward()
    sum(b.values()).backward()
    # conv biases before BatchNorm have a zero gradient up to rounding: compare the whole vector
    ga = torch.cat([p.grad.flatten() for p in plain.parameters() if p.grad is not None])
    gb = torch.cat([p.grad.flatten() for p in nhwc.parameters() if p.grad is not None])
    assert ga.abs().max() > 0
    assert (gb - ga).abs().max() <= 1e-4 * ga.abs().max()


@pytest.mark.slow
def test_compile_option_compiles_the_trained_model(toys, tmp_path: Path) -> None:
    spec = Spec.from_dict(
        toys.toy_spec(epochs=1, max_iters=2, compile=True, eval_interval=0, log_images=0)
    )
    trainer = Trainer(spec, tmp_path)
    start = time.monotonic()
    result = trainer.run()
    assert result["iteration"] == 2
    model = getattr(trainer.model, "module", trainer.model)
    assert model._compiled_call_impl is not None  # nn.Module.compile: keys unchanged
    state = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    assert not any("_orig_mod" in k for k in state)
    print(f"compile + 2 steps: {time.monotonic() - start:.1f} s")
