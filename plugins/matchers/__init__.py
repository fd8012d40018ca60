"""Matchers: anchors + padded ground truth (+ predictions) → matched gt index per anchor."""
