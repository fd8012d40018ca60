"""Matchers: IoU matrix [B,G,A] → matched gt index per anchor (and the batched IoU helper)."""
