"""Evaluation: the ``eval`` spec section, the metric interface, ``evaluate``."""

from .loop import build_metrics, eval_section, evaluate
from .metric import Metric
from .section import EvalSection

__all__ = ["EvalSection", "Metric", "build_metrics", "eval_section", "evaluate"]
