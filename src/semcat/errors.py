"""Exception types shared by every stage, so callers can catch one family per problem."""
from __future__ import annotations

from pathlib import Path


class SemcatError(Exception):
    """Base class of every error semcat raises on purpose (never a bug)."""


class ImageReadError(SemcatError, ValueError):
    """A file could not be read as an image. The message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class SemcatWarning(UserWarning):
    """Base class of semcat's warnings: the CLI prints each as one ``warning: ...`` line."""


class CacheError(SemcatError):
    """A feature cache file is corrupted or belongs to another backbone/preprocessing."""


class ModelFileError(SemcatError, ValueError):
    """A model artifact is corrupted, of another format version, or built for another backbone."""


class NotFittedError(SemcatError, ValueError, AttributeError):
    """An estimator was used before ``fit``: train it first (``semcat train`` or ``.fit(X, y)``)."""
