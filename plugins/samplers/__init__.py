"""Built-in samplers components."""
