"""Optimizers and learning-rate schedulers (registries ``optimizer`` and ``lr_scheduler``)."""
