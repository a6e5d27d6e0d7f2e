"""One exception hierarchy for everything airflow-mlops raises on purpose.

Every message names what is wrong in words a person can act on: the file, the
column, the field, and what was expected.
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base class of every error airflow-mlops raises on purpose."""


class ConfigError(MlopsError):
    """A pipeline file is missing, unreadable or does not match the schema."""


class StorageError(MlopsError):
    """The artifact store could not read or write an object."""


class ArtifactNotFoundError(StorageError, FileNotFoundError):
    """A path or object that was asked for does not exist."""


class UnknownSchemeError(StorageError, ValueError):
    """A URI names a scheme no store handles (only paths, file:// and s3://)."""


class UnsafePathError(StorageError, ValueError):
    """A key built from a run id, name or config path would leave the prefix it belongs to."""


class IntegrityError(MlopsError):
    """Content does not match the sha256 that was recorded for it."""


class DataError(MlopsError):
    """A dataset is empty, malformed, or lacks a column that is needed."""


class RegistryError(MlopsError):
    """A registry operation was refused (unknown model, version or alias, ...)."""


class ForbiddenMoveError(RegistryError, PermissionError):
    """A protected alias was asked to move by someone or something its policy does not allow."""


class NotFoundError(RegistryError, LookupError):
    """A registered model, version or alias does not exist."""


class ConflictError(RegistryError):
    """A compare-and-set lost a race: the alias moved since it was read."""


class TrainingError(MlopsError):
    """A model could not be trained or loaded from what it was given."""


class ModelLoadError(TrainingError):
    """A model file could not be loaded: corrupt, of another flavor, or naming types that are not allowed."""


class GateFailedError(MlopsError):
    """A gate (validation, evaluation, drift) failed under the `fail` policy."""
