"""Watching one evaluation metric across a run: the best value (``best.pt``) and early
stopping. Both keep plain-data state that ``last.pt`` stores, so a resumed run remembers
the best value and the evaluations without improvement."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import SpecError


class MetricWatch:
    """The best value of ``metric`` so far (``mode`` max or min) and how many evaluations in
    a row did not improve it by more than ``min_delta``."""

    def __init__(
        self, metric: str, mode: str = "max", min_delta: float = 0.0, key: str = ""
    ) -> None:
        self.metric = metric
        self.mode = mode
        self.min_delta = min_delta
        self.key = key  # the spec key naming the metric, for error messages
        self.best: float | None = None
        self.best_iteration: int | None = None
        self.stale = 0

    def observe(self, metrics: Mapping[str, float], iteration: int) -> bool:
        """Take one evaluation's metrics; True when ``metric`` improved (a new best).

        A metric the evaluation does not produce is a SpecError naming the ones it does.
        """
        if self.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise SpecError(
                f"{self.key}: {self.metric!r} is not an evaluation metric (got: {known})"
            )
        value = float(metrics[self.metric])
        sign = 1.0 if self.mode == "max" else -1.0
        better = math.isfinite(value) and (
            self.best is None or sign * (value - self.best) > self.min_delta
        )
        if better:
            self.best, self.best_iteration, self.stale = value, iteration, 0
        else:
            self.stale += 1
        return better

    def state_dict(self) -> dict[str, Any]:
        """Plain data for the checkpoint."""
        return {"best": self.best, "best_iteration": self.best_iteration, "stale": self.stale}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``'s output."""
        self.best = state.get("best")
        self.best_iteration = state.get("best_iteration")
        self.stale = int(state.get("stale", 0))
