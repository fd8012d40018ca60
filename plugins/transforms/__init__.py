"""Built-in transforms (registered on import)."""
