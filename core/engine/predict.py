"""Inference on image files: read, batch, run, draw, write (the library half of ``tools/infer.py``).

``predict_images(spec, checkpoint, paths, out_dir)`` writes ``<stem>.png`` (the prediction
drawn) and ``<stem>.json`` (the raw prediction) per image. Every file's header is read before
the model loads (a missing, unreadable or oversized image fails at once); pixels are decoded
one batch at a time, so memory stays bounded however many images there are; an image whose
pixels cannot be decoded stops the run with its name once every image before it is written.
Consecutive images of one size go through the model together (``batch_size``): no padding is
added and the per-call overhead is shared. Drawing and writing run in ``workers`` threads while the
model runs the next batch (PIL's drawing and PNG encoding release the GIL for most of their
time); outputs keep the order of ``paths``.

Measured on a 2-core CPU over 1,000 PNGs of 128x128 (``benchmarks/infer_folder.py``): see
``benchmarks/results/infer_folder_cpu.md``.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomically, write_text_atomically
from ..data import class_names_from_spec
from ..data.dataset import DECODE_ERRORS, decode_rgb
from ..errors import DataError
from ..spec import Spec
from .device import select_device
from .visualize import LEGIBLE_SIZE, draw_prediction

MAX_INPUT_PIXELS = 100_000_000
MAX_ASPECT_RATIO = 1000


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header (no pixels decoded); DataError for a file
    PIL cannot identify or whose size no model input pipeline handles."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    check_input_size((h, w), path)
    return h, w


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as float32 [3,H,W] in 0..1 (``decode_rgb``, the datasets' decoder), its
    size checked from the header before decoding; DataError naming the file."""
    image_size(path)
    try:
        return decode_rgb(path)
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None


def check_input_size(size: tuple[int, int], path: str | Path) -> None:
    """DataError for an ``(H, W)`` no model input pipeline handles in bounded memory: more
    than ``MAX_INPUT_PIXELS`` pixels, or sides in a ratio beyond ``MAX_ASPECT_RATIO`` (a
    resize to a model's short side would make the long side absurd, or the short side 0)."""
    h, w = size
    ratio = max(h, w) / max(1, min(h, w))
    if h * w > MAX_INPUT_PIXELS or ratio > MAX_ASPECT_RATIO:
        raise DataError(
            f"{path}: image is {h}x{w} pixels (HxW); the limits are {MAX_INPUT_PIXELS} pixels "
            f"and a side ratio of {MAX_ASPECT_RATIO}:1 (got {ratio:.0f}:1): crop or resize it"
        )


def same_size_batches(
    paths: Sequence[str | Path], sizes: Sequence[tuple[int, int]], batch_size: int
) -> Iterator[list[int]]:
    """Indices of ``paths`` in order, in runs of consecutive equal ``sizes``, each cut into
    batches of at most ``batch_size``."""
    for _, run in itertools.groupby(range(len(paths)), key=lambda i: sizes[i]):
        run = list(run)
        for start in range(0, len(run), batch_size):
            yield run[start : start + batch_size]


@torch.no_grad()
def predict_images(
    spec: Spec | None,
    checkpoint: str | Path | None,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    score_thresh: float = 0.3,
    class_names: Sequence[str] | None = None,
    device: str | None = None,
    min_size: int = LEGIBLE_SIZE,
    ground_truth: Mapping[str, Mapping[str, Any]] | None = None,
    notify: Callable[[Path, str], None] | None = None,
    batch_size: int = 8,
    workers: int = 2,
    progress: bool = False,
    model: Callable[[list[torch.Tensor]], list[dict[str, Any]]] | None = None,
) -> list[Path]:
    """Run the model on each image (0..1, as read: models normalise inside) and write
    ``out_dir/<stem>.png`` with the prediction drawn (``draw_prediction``) and
    ``out_dir/<stem>.json`` with the raw prediction (``predictions_json``); returns the PNG
    paths in the order of ``paths`` (a repeated stem gets ``_1``, ``_2``...).

    Images whose short side is below ``min_size`` are drawn enlarged by an integer factor (0:
    never). ``ground_truth`` maps an image's file name to a target dict (``boxes`` xyxy,
    ``labels``) drawn beside the prediction; ``notify(png, text)`` hears when no detection
    passes ``score_thresh`` ("0 of 100 detections ≥ 0.30; best 0.16"). ``batch_size``
    consecutive images of one size share a forward; ``workers`` threads draw and write (0:
    in this thread); ``progress`` shows a bar over the images. ``model``: run this callable
    (e.g. an exported file, ``anchorage.core.deploy.load_exported``) on the CPU instead of
    building ``spec`` and loading ``checkpoint``."""
    from tqdm import tqdm

    from .evaluate import load_model

    if batch_size < 1 or workers < 0:
        raise ValueError(f"batch_size >= 1 and workers >= 0, got {batch_size}, {workers}")
    sizes = [image_size(p) for p in paths]  # a bad file fails before the model loads
    names = list(class_names or []) if class_names or spec is None else class_names_from_spec(spec)
    if model is None:
        dev = select_device(device)
        model = load_model(spec, checkpoint, dev)
    else:
        dev = torch.device("cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = _unique_names(out, paths)

    def write(i: int, image: torch.Tensor, output: dict[str, Any]) -> None:
        drawn = draw_prediction(image, output, names, score_thresh, min_size)
        target = (ground_truth or {}).get(Path(paths[i]).name)
        if target is not None:
            from .pictures import with_ground_truth

            drawn = with_ground_truth(image, target, drawn, names, min_size)
        info = predictions_json(output, paths[i], image, names, score_thresh)
        _save_png(drawn, pngs[i])  # both atomic: a full disk is one line, the files before stay
        write_text_atomically(pngs[i].with_suffix(".json"), json.dumps(info) + "\n")

    from .pictures import nothing_passes

    pool = ThreadPoolExecutor(workers) if workers else None
    pending: deque[Future] = deque()  # bounded: at most two batches drawn ahead
    bar = tqdm(total=len(paths), desc="infer", unit="image", disable=not progress)
    try:
        for batch in same_size_batches(paths, sizes, batch_size):
            images, unreadable = _read_until_failure([paths[i] for i in batch])
            batch = batch[: len(images)]  # the images before an unreadable one still run
            outputs = (
                [_to_cpu(o) for o in model([image.to(dev) for image in images])] if images else []
            )
            for i, image, output in zip(batch, images, outputs):
                note = nothing_passes(output, score_thresh)
                if note is not None and notify is not None:
                    notify(pngs[i], note)
                if pool is None:
                    write(i, image, output)
                    bar.update()
                else:
                    pending.append(pool.submit(write, i, image, output))
            if unreadable is not None:
                raise unreadable  # after the images before it: the pool finishes their writes
            while len(pending) > 2 * batch_size:
                pending.popleft().result()  # re-raises a writer's error here
                bar.update()
        while pending:
            pending.popleft().result()
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True)  # what was submitted is still written
    return pngs


def _read_until_failure(paths: Sequence[str | Path]) -> tuple[list[torch.Tensor], DataError | None]:
    """The images of ``paths`` decoded in order up to the first that fails, and its error."""
    images = []
    for path in paths:
        try:
            images.append(read_image(path))
        except DataError as exc:
            return images, exc
    return images, None


def _to_cpu(output: dict[str, Any]) -> dict[str, Any]:
    return {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in output.items()}


def _save_png(image: torch.Tensor, path: Path) -> None:
    from torchvision.transforms.v2.functional import to_pil_image

    # zlib level 1 instead of 6: on BCCD photographs at 1280x960, 86 ms instead of 330 ms an
    # image for files 26% larger; these are previews, not archives
    picture = to_pil_image(image)
    write_atomically(path, lambda f: picture.save(f, format="PNG", compress_level=1))


def _unique_names(out: Path, paths: Sequence[str | Path]) -> list[Path]:
    """``out/<stem>.png`` per path; a stem seen before gets ``_1``, ``_2``, ..."""
    taken: set[Path] = set()
    names = []
    for path in paths:
        stem = Path(path).stem
        candidate, n = out / f"{stem}.png", 1
        while candidate in taken:
            candidate, n = out / f"{stem}_{n}.png", n + 1
        taken.add(candidate)
        names.append(candidate)
    return names


def predictions_json(
    output: Mapping[str, Any],
    path: str | Path,
    image: torch.Tensor,
    class_names: Sequence[str],
    score_thresh: float,
) -> dict[str, Any]:
    """One image's raw prediction as plain data: ``{"image", "width", "height",
    "score_thresh", "detections": [{"bbox" xywh pixels, "score", "label", "class",
    "segmentation" RLE when masks}]}`` (every detection, also those under the threshold);
    semantic segmentation: ``{"classes": {name: pixel fraction}}`` instead of detections; a
    classifier: ``{"topk": [{"label", "class", "score"}]}``, best first."""
    from ..evaluation.export import coco_results

    info: dict[str, Any] = {
        "image": str(path),
        "width": int(image.shape[-1]),
        "height": int(image.shape[-2]),
        "score_thresh": score_thresh,
    }

    def name(label: int) -> str:
        return class_names[label - 1] if 1 <= label <= len(class_names) else str(label)

    if "probs" in output and "boxes" not in output:  # a classifier: its top-k, best first
        info["topk"] = [
            {"label": int(label), "class": name(int(label)), "score": float(score)}
            for label, score in zip(output["labels"].tolist(), output["scores"].tolist())
        ]
        return info
    if "boxes" not in output:
        logits = output["sem_seg"].detach().float().cpu()
        pred = logits.reshape(logits.shape[-3], -1).argmax(0)
        counts = torch.bincount(pred, minlength=logits.shape[-3]).double() / max(len(pred), 1)
        info["classes"] = {
            (class_names[c - 1] if c <= len(class_names) else str(c)): float(counts[c])
            for c in range(1, logits.shape[-3])
            if counts[c] > 0
        }
        return info
    detections = coco_results(output, 0)
    for det in detections:
        det.pop("image_id")
        label = det.pop("category_id")
        det["label"] = label
        det["class"] = name(label)
    info["detections"] = detections
    return info
