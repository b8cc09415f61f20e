"""Errors raised by the ML code. Every MLError is about the input, so retrying cannot help; StorageUnavailable
(storage failed for a moment while reading) is the one worth retrying."""


class MLError(Exception):
    """Base class: a problem with the data, the model or the artifact; never worth retrying."""


class InvalidTrainingData(MLError):
    """The training set cannot train a classifier (too few rows, one class, a class with one example...)."""


class ModelNotFound(MLError):
    """The base model is neither a local folder nor reachable on the Hugging Face hub."""


class CorruptArtifact(MLError):
    """A saved model is missing files or its hash does not match the registry."""


class EngineUnavailable(MLError):
    """An inference engine (or its quantizer) was asked for that is not installed on this host."""


class StorageUnavailable(Exception):
    """Storage failed while an artifact was read (an NFS hiccup, EIO, a stale handle): worth retrying."""


# Errors that say the artifact itself is missing or unreadable: retrying cannot help.
_ARTIFACT_OS_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def artifact_read_error(exc: OSError, what: str) -> Exception:
    """The error to raise for an OSError met reading an artifact: permanent if the file is missing or
    unreadable, transient (StorageUnavailable) for any other failure of the storage (one with an errno: a
    library's own OSError, such as a tokenizer that cannot load, has none and is about the artifact)."""
    if isinstance(exc, _ARTIFACT_OS_ERRORS) or exc.errno is None:
        return CorruptArtifact(f"{what}: {exc}")
    return StorageUnavailable(f"{what}: storage error: {exc}")


class Cancelled(Exception):
    """Work stopped because the caller asked it to (cancellation, or the job's lease was lost)."""
