"""The interfaces plugins implement; each docstring is the contract the tests check."""

from .dense import BoxLoss, DenseHead, DenseLoss, DensePostprocessor, DenseTargets
from .features import Backbone, FeatureSpec, Neck
from .matching import (
    AnchorGenerator,
    Anchors,
    Assignment,
    BoxCoder,
    GroundTruth,
    IoUMatcher,
    Matcher,
    Sampler,
)
from .prediction import Head, Loss, Postprocessor, RoIExtractor

__all__ = [
    "AnchorGenerator",
    "Anchors",
    "Assignment",
    "Backbone",
    "BoxCoder",
    "BoxLoss",
    "DenseHead",
    "DenseLoss",
    "DensePostprocessor",
    "DenseTargets",
    "FeatureSpec",
    "GroundTruth",
    "Head",
    "IoUMatcher",
    "Loss",
    "Matcher",
    "Neck",
    "Postprocessor",
    "RoIExtractor",
    "Sampler",
]
