"""Whole models (torchvision-style detection I/O) and their shared pieces."""
