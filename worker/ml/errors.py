"""Errors raised by the ML code. Every one of them is about the input, so retrying cannot help."""


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


class Cancelled(Exception):
    """Work stopped because the caller asked it to (cancellation, or the job's lease was lost)."""
