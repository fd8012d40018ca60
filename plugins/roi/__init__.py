"""Built-in roi components."""
