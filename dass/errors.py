"""User-facing errors.

Every problem caused by the user's input (a file, a config key, a checkpoint) is raised as a
:class:`DassError` whose message is ONE line naming the offending thing and the fix. The CLI prints it
as ``error: <message>`` and exits with status 2; nothing else is printed (no traceback).
"""
from __future__ import annotations


class DassError(Exception):
    """An error the user can fix; the message is a single line naming the file/key and the fix."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep it to one line whatever the caller passed: multi-line messages break log grepping.
        super().__init__(" ".join(str(message).split()))


class ConfigError(DassError):
    """Unknown config key, bad value type or out-of-range value."""


class DataError(DassError):
    """Missing/malformed dataset file."""


class CheckpointError(DassError):
    """Corrupt, missing or mismatched checkpoint."""


class ArchError(DassError, ValueError):
    """An architecture that is not a member of the search space."""


class DownloadError(DassError):
    """A download, checksum, manifest or archive problem (one line naming the file and the URL)."""
