"""The interfaces plugins implement; each docstring is the contract the tests check."""

from .features import Backbone, FeatureSpec, Neck
from .matching import AnchorGenerator, BoxCoder, Matcher, Sampler
from .prediction import Head, Loss, Postprocessor, RoIExtractor
from .roles import (
    ImagePriorLoss,
    MaskLoss,
    MaskPostprocessor,
    ProposalGenerator,
    RCNNPostprocessor,
    RoIBoxHead,
    RoIBoxLoss,
    RoIMaskHead,
    RPNHead,
    RPNLoss,
    SegmentationHead,
    SegmentationLoss,
    StyleLoss,
)

__all__ = [
    "AnchorGenerator",
    "Backbone",
    "BoxCoder",
    "FeatureSpec",
    "Head",
    "ImagePriorLoss",
    "Loss",
    "MaskLoss",
    "MaskPostprocessor",
    "Matcher",
    "Neck",
    "Postprocessor",
    "ProposalGenerator",
    "RCNNPostprocessor",
    "RPNHead",
    "RPNLoss",
    "RoIBoxHead",
    "RoIBoxLoss",
    "RoIExtractor",
    "RoIMaskHead",
    "Sampler",
    "SegmentationHead",
    "SegmentationLoss",
    "StyleLoss",
]
