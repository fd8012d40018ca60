"""Set-prediction components: positional encodings, DETR and deformable transformers, heads."""
