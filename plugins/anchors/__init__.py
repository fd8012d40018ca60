"""Anchor generators: default boxes / priors for an image size and its feature maps."""
