"""Backbones: image batch → multi-level features with declared ``feature_info``."""
