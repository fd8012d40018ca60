"""Losses: predictions + assigned targets → ``loss_*`` terms."""
