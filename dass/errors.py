"""User-facing errors.

Every problem caused by the user's input (a file, a config key, a checkpoint) is raised as a
:class:`DassError` whose message is ONE line naming the offending thing and the fix. The CLI prints it
as ``error: <message>`` and exits with status 2; nothing else is printed (no traceback).
"""
from __future__ import annotations

import errno
import sys
from typing import Callable, Optional


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


def run_reporting_errors(fn: Callable[[], Optional[int]], interrupted: str = "interrupted; re-run the same "
                         "command to resume") -> int:
    """Run a command's body; return its exit status. The house rule for every entry point (the CLI, the
    downloaders, the bench scripts): a :class:`DassError` or a full disk is ONE ``error: ...`` line on stderr
    and exit 2; Ctrl-C is one line and 130."""
    try:
        return int(fn() or 0)
    except DassError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {e.filename}" if e.filename else ""
            print(f"error: no space left on device{where}; free disk space and re-run the same command "
                  f"(finished work is kept and resumed)", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
