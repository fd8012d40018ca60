"""Built-in metrics (registered on import)."""
