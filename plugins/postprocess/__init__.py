"""Postprocessors: raw predictions → per-image detections."""
