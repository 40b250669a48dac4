"""Glassbox's one error tree.

::

    GlassboxError                 base of everything Glassbox raises on purpose
    ├── InvalidInputError         a file, row, field or argument is wrong (names which, and why)
    │   └── UnknownNameError      a registry key that does not exist (with close matches)
    ├── ModelError                a model file or spec cannot be loaded or does not fit its input
    ├── ExplainerError            an explanation method cannot run on this model / input / target
    └── RecordError               the review record (verdicts, audit log) could not be written or read

Pages catch ``GlassboxError`` and show its message; anything else is a bug and surfaces.
Messages name the bad file, row or field and the valid options, and never echo patient data.
"""
from __future__ import annotations

__all__ = ["GlassboxError", "InvalidInputError", "UnknownNameError", "ModelError", "ExplainerError", "RecordError"]


class GlassboxError(Exception):
    """Base class of every error Glassbox raises on purpose."""


class InvalidInputError(GlassboxError, ValueError):
    """A file, row, field or argument given to Glassbox is wrong."""


class UnknownNameError(InvalidInputError, KeyError):
    """A name looked up in a registry does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelError(GlassboxError):
    """A model cannot be loaded, or does not fit the input it is given."""


class ExplainerError(GlassboxError):
    """An explanation method cannot run on this model, input or target."""


class RecordError(GlassboxError):
    """The review record could not be written or read (disk full, read-only, locked too long): nothing was saved."""
