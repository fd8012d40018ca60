"""Measures that talk to torch.profiler stay quiet on a machine without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import torch
    from anchorage.benchmarking.measure import make_train_step, peak_step_memory

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(12, 1)

        def forward(self, images, targets):
            return {"loss_toy": self.lin(torch.stack(images).flatten(1)).mean()}

    step, opt = make_train_step(
        Toy(), [torch.rand(3, 2, 2)], [{}], seed=0, amp=False, device=torch.device("cpu")
    )
    peak, method = peak_step_memory(step, opt, torch.device("cpu"))
    print(peak > 0, method)
    """
)


def test_cpu_peak_memory_prints_no_profiler_log_lines() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True torch.profiler CPU memory events")
    for noise in ("USDT", "gpuGetDeviceCount", "STAGE:"):
        assert noise not in result.stderr, result.stderr
