"""Heads: features → named prediction tensors."""
