"""Built-in datasets (registered on import)."""
