"""Imports the core modules that declare top-level spec sections (``register_section``).

``model`` is declared in ``spec.py``. Each core subsystem that owns a section (data, train,
eval) adds its import here, so validation always knows every core section.
"""

from .data import section as _data_section  # noqa: F401 - declares "data"
from .engine import config as _engine_config  # noqa: F401 - declares "train"
from .evaluation import section as _eval_section  # noqa: F401 - declares "eval"
