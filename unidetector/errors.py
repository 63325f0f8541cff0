"""The project's error type: what ``unidet`` reports as one line (``unidet <command>: error: ...``, exit 2).

Raise a subclass of :class:`UnidetError` for anything a user can fix (a bad file, key, value or
command line); its message names the file (and key, image or iteration) at fault. Programming
errors stay ordinary exceptions and keep their traceback.
"""
from __future__ import annotations


class UnidetError(Exception):
    """A problem with the user's input, named in the message (file, key, image, iteration)."""


class DetectorError(UnidetError, ValueError):
    """A checkpoint, config, encoder or input that cannot make a detector (the message says why)."""


# ----------------------------------------------------------------------------------------- results


class UsageError(UnidetError, ValueError):
    """Command-line arguments or API arguments that do not make a run."""
