"""Errors raised for bad user input.

Every error a user can cause by a spec, a command line, a checkpoint or a data file is an
``AnchorageError``. Tools catch it, print its message and exit with status 2 (no traceback
unless ``--debug``). Anything else is a bug in anchorage or a plugin and keeps its traceback.
"""

from __future__ import annotations


class AnchorageError(Exception):
    """Base class of errors caused by user input (spec, command line, files)."""


class SpecError(AnchorageError):
    """A spec file or override is malformed or does not validate."""


class RegistryError(AnchorageError):
    """A registry lookup or registration failed (unknown or duplicate name)."""


class CheckpointError(AnchorageError):
    """A checkpoint cannot be read or does not fit the model."""


class DataError(AnchorageError):
    """A dataset, annotation or image file is missing or malformed."""


class PluginError(AnchorageError):
    """A component returned what its slot's contract does not allow (shape, dtype, keys); the
    message names the slot's key path, the component and the plugin that provides it."""
