"""Overlapping-tile (sliding-window) inference for dense prediction on large images.

An image larger than the network's input (crop) size is cut into tiles of that size whose
top-left corners are ``0, stride, 2·stride, ...`` and, last, ``length − tile`` so that the
final tile ends at the image border (mmsegmentation's "slide" mode). Every pixel is covered
by at least one tile; the logits of overlapping tiles are summed and divided by the number
of tiles covering each pixel (an average). Tiles run through the network in batches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``0..length-1`` with step ``stride``.

    ``[0]`` when ``length <= tile`` (one tile, clipped to the image). Otherwise ``0, stride,
    ...`` while the tile fits, then ``length − tile`` so that the last tile touches the end.
    """
    if tile <= 0 or stride <= 0:
        raise ValueError(f"tile and stride must be positive, got tile={tile}, stride={stride}")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def tile_windows(
    size: tuple[int, int], tile: tuple[int, int], stride: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """All windows ``(y0, x0, y1, x1)`` (exclusive ends) for an image ``size`` ``(H, W)``."""
    (h, w), (th, tw), (sh, sw) = size, tile, stride
    return [
        (y, x, min(y + th, h), min(x + tw, w))
        for y in tile_starts(h, th, sh)
        for x in tile_starts(w, tw, sw)
    ]


def sliding_window(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    tile: tuple[int, int],
    stride: tuple[int, int],
    *,
    tiles_per_batch: int = 4,
) -> torch.Tensor:
    """Run ``fn`` over overlapping tiles of ``images`` and average the logits where they overlap.

    ``fn``: ``[N, 3, th, tw]`` → ``[N, K, th, tw]`` logits at the tile's size. ``images`` float
    ``[B, 3, H, W]``. Returns float ``[B, K, H, W]`` on the images' device: for every pixel, the
    mean of the logits of all tiles covering it. ``tiles_per_batch`` tiles (each a whole batch
    of B crops) go through ``fn`` at once. With ``H <= th`` and ``W <= tw`` this is ``fn(images)``.
    """
    b, _, h, w = images.shape
    windows = tile_windows((h, w), tile, stride)
    total: torch.Tensor | None = None
    count = images.new_zeros(1, 1, h, w)
    for i in range(0, len(windows), tiles_per_batch):
        chunk = windows[i : i + tiles_per_batch]
        crops = torch.cat([images[:, :, y0:y1, x0:x1] for y0, x0, y1, x1 in chunk])
        logits = fn(crops)
        if total is None:
            total = logits.new_zeros(b, logits.shape[1], h, w)
        for j, (y0, x0, y1, x1) in enumerate(chunk):
            total[:, :, y0:y1, x0:x1] += logits[j * b : (j + 1) * b]
            count[:, :, y0:y1, x0:x1] += 1
    assert total is not None and bool((count > 0).all()), "a pixel is not covered by any tile"
    return total / count
