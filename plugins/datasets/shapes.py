"""``shapes``: a built-in synthetic detection / segmentation set, deterministic from a seed.

Each image shows 1..k filled shapes (rectangle, ellipse, triangle; star and hexagon on
request) of varied colours, sizes (log-uniform between ``min_size`` and ``max_size`` pixels),
rotations and moderate occlusion, over a noisy or textured background. The generator writes
real files — PNG (or JPEG) images and a COCO JSON with boxes, areas and RLE instance masks of
the *visible* part of every shape — into a cache folder keyed by a hash of its parameters, then
loads them through the ``coco`` code path. A second build with the same parameters reuses the
files. Splits draw from different random streams (``seed``, split, image index), so train, val
and test never share an image.

Cache folder: ``root`` from the spec, else ``$ANCHORAGE_CACHE``, else ``~/.cache/anchorage``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from anchorage.core.errors import SpecError
from anchorage.core.registry import DATASETS
from anchorage.plugins.datasets.coco import CocoDataset

GENERATOR_VERSION = 2
"""Bumped whenever the drawing code changes, so stale caches are never reused."""
SHAPES = ("rectangle", "ellipse", "triangle", "star", "hexagon")
SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
MIN_VISIBLE_PIXELS = 16
"""A shape keeps at least this many visible pixels (else it is not placed)."""


def cache_root(root: str | None = None) -> Path:
    """``root``, else ``$ANCHORAGE_CACHE``, else ``~/.cache/anchorage``."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get("ANCHORAGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "anchorage"


@attrs.frozen(kw_only=True)
class GenParams:
    """Everything that determines the generated files (hashed into the cache key)."""

    split: str
    num_images: int
    image_size: tuple[int, int]
    min_objects: int
    max_objects: int
    min_size: float
    max_size: float
    classes: tuple[str, ...]
    background: str
    noise: float
    max_occlusion: float
    rotation: bool
    seed: int
    format: str

    def key(self) -> str:
        """Short hash of the parameters and the generator version."""
        text = json.dumps([GENERATOR_VERSION, attrs.asdict(self)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unit_polygon(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices [V,2] of a shape inscribed in the unit circle (before rotation/scale)."""
    if kind == "rectangle":
        a = rng.uniform(0.45, 1.0)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]], dtype=np.float64)
        return pts / np.hypot(1, a)
    if kind == "ellipse":
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        return np.stack([np.cos(t), rng.uniform(0.5, 1.0) * np.sin(t)], 1)
    if kind == "triangle":
        t = np.deg2rad(np.array([90.0, 210.0, 330.0]) + rng.uniform(-15, 15, 3))
        return np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "star":
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if kind == "hexagon":
        t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    raise ValueError(f"unknown shape {kind!r}; known: {', '.join(SHAPES)}")


def _background(p: GenParams, rng: np.random.Generator) -> np.ndarray:
    """Float32 [H,W,3] background in 0..1: plain colour, smooth gradient or texture."""
    h, w = p.image_size
    base = rng.uniform(0.1, 0.9, 3).astype(np.float32)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    if p.background == "plain":
        return img
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    direction = rng.uniform(-1, 1, 2)
    ramp = (direction[0] * xx / w + direction[1] * yy / h)[..., None]
    img = img + 0.15 * ramp * rng.uniform(-1, 1, 3).astype(np.float32)
    if p.background == "texture":
        freq = rng.uniform(0.05, 0.3)
        angle = rng.uniform(0, np.pi)
        stripes = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))[..., None]
        img = img + 0.12 * stripes * rng.uniform(-1, 1, 3).astype(np.float32)
        coarse = rng.uniform(-0.12, 0.12, (3, max(h // 16, 2), max(w // 16, 2)))
        blobs = [
            np.asarray(Image.fromarray(c.astype(np.float32), "F").resize((w, h), Image.BILINEAR))
            for c in coarse
        ]
        img = img + np.stack(blobs, -1)
    return img


def _colour(bg_mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fill colour clearly different from the background's mean colour."""
    for _ in range(20):
        c = rng.uniform(0, 1, 3)
        if np.linalg.norm(c - bg_mean) > 0.45:
            break
    return c.astype(np.float32)


def _place_shapes(
    p: GenParams, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[int], list[np.ndarray]]:
    """Draw shapes one by one; return visible masks, class indices and full masks."""
    h, w = p.image_size
    n = int(rng.integers(p.min_objects, p.max_objects + 1))
    visible: list[np.ndarray] = []
    classes: list[int] = []
    full: list[np.ndarray] = []
    for _ in range(20 * n):
        if len(visible) == n:
            break
        cls = int(rng.integers(len(p.classes)))
        size = float(np.exp(rng.uniform(np.log(p.min_size), np.log(p.max_size))))
        half = size / 2
        cx = rng.uniform(half * 0.7, max(w - half * 0.7, half * 0.7 + 1))
        cy = rng.uniform(half * 0.7, max(h - half * 0.7, half * 0.7 + 1))
        angle = rng.uniform(0, 2 * np.pi) if p.rotation else 0.0
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        pts = _unit_polygon(p.classes[cls], rng) @ rot.T * half + [cx, cy]
        canvas = Image.new("L", (w, h), 0)
        ImageDraw.Draw(canvas).polygon([tuple(v) for v in pts], fill=1)
        mask = np.asarray(canvas, dtype=bool)
        if mask.sum() < MIN_VISIBLE_PIXELS * 2:
            continue
        if any(
            (v & mask).sum() > p.max_occlusion * v.sum() or (v & ~mask).sum() < MIN_VISIBLE_PIXELS
            for v in visible
        ):
            continue
        visible = [v & ~mask for v in visible]
        visible.append(mask)
        classes.append(cls)
        full.append(mask)
    return visible, classes, full


def render_image(p: GenParams, index: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Image ``index`` of the split: uint8 [H,W,3] and its annotations (COCO dicts, no ids).

    Deterministic: the random stream is seeded by (seed, split, index).
    """
    rng = np.random.default_rng([p.seed, SPLIT_STREAM[p.split], index])
    img = _background(p, rng)
    bg_mean = img.reshape(-1, 3).mean(0)
    visible, classes, full = _place_shapes(p, rng)
    for mask in full:  # paint in order: later shapes cover earlier ones
        colour = _colour(bg_mean, rng)
        img[mask] = colour + rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    if p.noise > 0:
        img += p.noise * rng.standard_normal(img.shape, dtype=np.float32)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    anns = []
    for mask, cls in zip(visible, classes):
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(
            {
                "category_id": cls + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": int(mask.sum()),
                "iscrowd": 0,
                "segmentation": rle,
            }
        )
    return out, anns


def _render_chunk(p: GenParams, indices: list[int], folder: str) -> list[list[dict[str, Any]]]:
    out = []
    for i in indices:
        img, anns = render_image(p, i)
        name = Path(folder) / f"{i:06d}.{p.format}"
        if p.format == "png":
            Image.fromarray(img).save(name, compress_level=1)
        else:
            Image.fromarray(img).save(name, quality=95)
        out.append(anns)
    return out


def generate(p: GenParams, folder: Path, workers: int = 1) -> None:
    """Write ``images/*.{png,jpg}`` and ``annotations.json`` for ``p`` into ``folder``."""
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    indices = list(range(p.num_images))
    chunks = [indices[k::workers] for k in range(workers)] if workers > 1 else [indices]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(
                pool.map(_render_chunk, [p] * workers, chunks, [str(images_dir)] * workers)
            )
    else:
        parts = [_render_chunk(p, indices, str(images_dir))]
    per_image: dict[int, list[dict[str, Any]]] = {}
    for chunk, part in zip(chunks, parts):
        per_image.update(zip(chunk, part))
    h, w = p.image_size
    images, annotations = [], []
    for i in indices:
        images.append(
            {"id": i + 1, "file_name": f"images/{i:06d}.{p.format}", "height": h, "width": w}
        )
        for ann in per_image[i]:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **ann})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(p.classes)]
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": categories,
        "info": {"description": "anchorage shapes", "params": attrs.asdict(p)},
    }
    (folder / "annotations.json").write_text(json.dumps(coco))


def ensure_generated(p: GenParams, root: Path, workers: int = 1) -> Path:
    """The cache folder holding ``p``'s files, generated first when missing.

    Generation writes into a temporary sibling folder and renames it into place, so that
    concurrent builders (DataLoader workers, torchrun ranks, parallel tests) never see a
    half-written set; the loser of a race discards its copy.
    """
    folder = root / "shapes" / f"{p.split}-{p.key()}"
    if (folder / "annotations.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        generate(p, tmp, workers)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "annotations.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _check_classes(_: Any, __: Any, value: tuple[str, ...]) -> None:
    unknown = [c for c in value if c not in SHAPES]
    if unknown or len(set(value)) != len(value) or not value:
        raise ValueError(f"classes must be distinct names from {SHAPES}, got {value}")


@DATASETS.register(
    "shapes",
    examples=(
        {"num_images": 3, "image_size": (48, 64), "max_size": 30.0, "masks": True},
        {"num_images": 2, "split": "val", "semantic_masks": True, "background": "texture"},
    ),
)
class ShapesDataset(CocoDataset):
    """Synthetic shapes (see the module docstring): generated once into a cache folder, then
    read by the ``coco`` dataset's own constructor from that folder's COCO JSON."""

    @attrs.frozen(kw_only=True)
    class Config:
        split: Literal["train", "val", "test"] = "train"
        num_images: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
        image_size: tuple[int, int] = (128, 128)  # (H, W)
        min_objects: int = attrs.field(default=1, validator=attrs.validators.ge(0))
        max_objects: int = attrs.field(default=4, validator=attrs.validators.ge(1))
        min_size: float = attrs.field(default=12.0, validator=attrs.validators.ge(4.0))
        max_size: float = attrs.field(default=80.0, validator=attrs.validators.ge(4.0))
        classes: tuple[str, ...] = attrs.field(
            default=("rectangle", "ellipse", "triangle"), validator=_check_classes
        )
        background: Literal["plain", "noise", "texture"] = "noise"
        noise: float = attrs.field(default=0.03, validator=attrs.validators.ge(0.0))
        max_occlusion: float = attrs.field(
            default=0.3, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
        )
        rotation: bool = True
        seed: int = 0
        format: Literal["png", "jpg"] = "png"
        root: str | None = None
        workers: int = attrs.field(default=1, validator=attrs.validators.ge(1))
        masks: bool = False
        semantic_masks: bool = False

    def __init__(self, cfg: Config) -> None:
        if cfg.min_objects > cfg.max_objects or cfg.min_size > cfg.max_size:
            raise SpecError(
                "shapes: need min_objects <= max_objects and min_size <= max_size, got "
                f"objects {cfg.min_objects}..{cfg.max_objects}, "
                f"sizes {cfg.min_size}..{cfg.max_size}"
            )
        params = GenParams(**{f.name: getattr(cfg, f.name) for f in attrs.fields(GenParams)})
        folder = ensure_generated(params, cache_root(cfg.root), cfg.workers)
        super().__init__(
            CocoDataset.Config(
                ann_file=str(folder / "annotations.json"),
                img_dir=str(folder),
                masks=cfg.masks,
                semantic_masks=cfg.semantic_masks,
            )
        )
        self.folder = folder
