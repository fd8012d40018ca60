"""Anchors, matching, box coding and sampling: the target-assignment interfaces."""

from __future__ import annotations

import torch


class AnchorGenerator:
    """Anchors (default boxes, priors) for one image size and its feature maps.

    ``__call__(image_size, feature_sizes)``: ``image_size`` is ``(H, W)`` of the (padded) batch
    tensor, ``feature_sizes`` a list of ``(h, w)`` per level, fine → coarse. Returns float32
    ``[A,4]`` xyxy anchors in absolute pixels of that tensor, level by level, location by
    location (row-major), ``num_anchors_per_location()[level]`` per location — the order a
    head's flattened predictions use. ``per_level=True`` returns the list of per-level tensors.
    ``device`` selects where the anchors live.
    """

    def num_anchors_per_location(self) -> list[int]:
        """Anchors at each location, per level."""
        raise NotImplementedError

    def __call__(
        self,
        image_size: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        *,
        device: torch.device | str = "cpu",
        per_level: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        raise NotImplementedError


class Matcher:
    """Quality matrix → matched ground-truth index per anchor.

    ``__call__(iou)``: ``iou`` float ``[B,G,A]`` (G = padded gt count; padded and ignored gt
    rows hold -1, so they never match). Returns int64 ``[B,A]``: matched gt index in 0..G-1,
    ``-1`` background, ``-2`` ignored (between thresholds). With G = 0 every anchor is ``-1``.
    Vectorized over the batch; runs on the input's device.
    """

    BACKGROUND = -1
    IGNORE = -2

    def __call__(self, iou: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BoxCoder:
    """Boxes ↔ regression targets relative to reference boxes (anchors or proposals).

    ``encode(boxes, reference)``: both ``[..., 4]`` xyxy absolute pixels, broadcastable;
    returns deltas of the same shape. ``decode(deltas, reference)`` is its exact inverse
    (up to float error), returning xyxy boxes. Empty inputs give empty outputs.
    """

    def encode(self, boxes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, deltas: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Sampler:
    """Matched labels → which anchors/proposals train.

    ``__call__(matched)``: int64 ``[B,N]`` as a Matcher returns it (>= 0 positive, -1
    negative, -2 ignore). Returns bool ``(positive [B,N], negative [B,N])``, disjoint; with no
    positives the negatives may still be sampled. Random choices use torch's global RNG.
    """

    def __call__(self, matched: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError
