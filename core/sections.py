"""Imports the core modules that declare top-level spec sections (``register_section``).

``model`` is declared in ``spec.py``. Each core subsystem that owns a section (data, train,
eval) adds its import here, so validation always knows every core section.
"""
