"""Errors of the pure core.

Bad input is data: it is raised as InvalidRecord and turned into a dead letter by
the shell; anything else is a bug.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the core raises on purpose."""


class InvalidRecord(PipelineError):
    """A message that is not a valid document.

    Attributes:
        reason: a readable one-line explanation, safe to log (never holds the
            value of a personal field).
        field: the JSON path of the offending field, or None for the whole message.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason if field is None else f"{field}: {reason}")
        self.reason = reason if field is None else f"{field}: {reason}"
        self.field = field


class StateCodecError(PipelineError):
    """Stored state bytes that cannot be decoded (corrupt or from an unknown version)."""
