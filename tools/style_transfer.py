#!/usr/bin/env python
"""Neural style transfer: repaint CONTENT in the style of STYLE (Gatys et al.).

    python tools/style_transfer.py content.jpg style.jpg --out result.png \\
        --weights vgg19-dcbb9e9d.pth [--spec style_transfer_gatys.yaml] [--steps 300]

The spec's ``style_transfer`` section sets the layers, loss weights, optimizer and steps
(``specs/style_transfer_gatys.yaml`` by default). ``--weights`` is a local torchvision VGG-19
state dict (``vgg19-dcbb9e9d.pth``); without it the extractor has random weights and the
result looks poor. Loss terms are printed every ``log_every`` steps and intermediate images
go to TensorBoard (``--log-dir``). The output keeps the content image's size.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anchorage.core.cli import make_parser, run_tool
from anchorage.core.errors import DataError, SpecError

DEFAULT_SPEC = "style_transfer_gatys.yaml"


def read_image(path: str) -> Any:
    """An image file as float ``[3,H,W]`` in 0..1 (grey and RGBA converted to RGB)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        with Image.open(path) as image:
            return pil_to_tensor(image.convert("RGB")).float() / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the image ({exc})") from None


def apply_options(cfg: Any, args: Any) -> Any:
    """The spec's section with the command-line overrides (steps, size, weights)."""
    import attrs

    from anchorage.core import ComponentSpec

    changes = {}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.size is not None:
        changes["size"] = args.size
    if args.weights is not None:
        if cfg.extractor is None:
            changes["weights_path"] = args.weights
        else:
            ext = cfg.extractor
            params = {**ext.params, "weights_path": args.weights}
            changes["extractor"] = ComponentSpec(
                kind=ext.kind, type=ext.type, params=params, path=ext.path
            )
    try:
        return attrs.evolve(cfg, **changes)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"command-line option: {exc.args[0] if exc.args else exc}") from None


def weights_given(cfg: Any) -> bool:
    """Whether the extractor loads local weights (else it is randomly initialised)."""
    if cfg.extractor is None:
        return cfg.weights_path is not None
    return cfg.extractor.params.get("weights_path") is not None


def make_logger(log_dir: str | None, log_every: int, bar: Any) -> tuple[Any, Any]:
    """Step callback: progress-bar postfix, printed loss terms, TensorBoard scalars/images."""
    from tqdm import tqdm

    writer = None
    if log_dir:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir)

    def callback(step: int, terms: dict[str, float], image: Any) -> None:
        bar.update(1)
        bar.set_postfix({k.removeprefix("loss_"): f"{v:.4g}" for k, v in terms.items()})
        if writer is not None:
            for key, value in terms.items():
                writer.add_scalar(f"style_transfer/{key}", value, step)
        if step % log_every == 0 or step == bar.total:
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.5g}" for k, v in terms.items()))
            if writer is not None:
                writer.add_image("style_transfer/synthesized", image.clamp(0, 1).cpu(), step)

    return callback, writer


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("content", help="content image file")
    parser.add_argument("style", help="style image file")
    parser.add_argument("--out", required=True, help="output image file (e.g. result.png)")
    parser.add_argument("--spec", default=DEFAULT_SPEC, help=f"spec file (default {DEFAULT_SPEC})")
    parser.add_argument("--steps", type=int, help="optimisation steps (default: the spec's)")
    parser.add_argument("--size", type=int, help="longest side of the working resolution")
    parser.add_argument("--weights", help="local torchvision VGG-19 state dict (.pth)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--log-dir",
        help="TensorBoard folder (default work_dirs/style_transfer/<out name>; '' disables)",
    )
    args = parser.parse_args(argv)
    import torch
    from torchvision.utils import save_image
    from tqdm import tqdm

    from anchorage.core import load_spec
    from anchorage.core.plugins import ensure_plugins_loaded

    ensure_plugins_loaded()  # the style_transfer section is declared by a plugin module
    from anchorage.plugins.models.style_transfer import StyleTransfer

    spec = load_spec(args.spec, args.overrides)
    cfg = apply_options(spec.section("style_transfer"), args)
    if not weights_given(cfg):
        print(
            "warning: no local VGG-19 weights given (--weights vgg19-dcbb9e9d.pth): the feature "
            "extractor has RANDOM weights, so the result will look poor",
            file=sys.stderr,
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    content, style = read_image(args.content), read_image(args.style)
    pipeline = StyleTransfer(cfg, device=device)
    log_dir = args.log_dir
    if log_dir is None:
        log_dir = str(Path("work_dirs") / "style_transfer" / Path(args.out).stem)
    with tqdm(total=cfg.steps, desc="style transfer", unit="step") as bar:
        callback, writer = make_logger(log_dir, cfg.log_every, bar)
        result = pipeline.run(content, style, callback=callback)
    if writer is not None:
        writer.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_image(result.image, args.out)
    print(f"saved {args.out} ({result.image.shape[-1]}x{result.image.shape[-2]}) on {device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
