"""Box coders: boxes ↔ regression deltas relative to reference boxes."""
