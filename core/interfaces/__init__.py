"""The interfaces plugins implement; each docstring is the contract the tests check."""

from .features import Backbone, FeatureSpec, Neck
from .matching import AnchorGenerator, BoxCoder, Matcher, Sampler
from .prediction import Head, Loss, Postprocessor, RoIExtractor

__all__ = [
    "AnchorGenerator",
    "Backbone",
    "BoxCoder",
    "FeatureSpec",
    "Head",
    "Loss",
    "Matcher",
    "Neck",
    "Postprocessor",
    "RoIExtractor",
    "Sampler",
]
