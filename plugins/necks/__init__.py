"""Built-in necks components."""
