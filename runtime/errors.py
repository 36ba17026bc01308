"""The errors embedrt raises: one small tree, so callers can catch by meaning.

    EmbedrtError                 base of everything below
    +-- ModelLoadError           artifact missing, corrupted (sha256 mismatch), or malformed
    +-- ProviderError            requested device / execution provider not available or not active
    +-- InputError               texts of the wrong type or shape (the HTTP service answers 422)
    |   +-- TooLargeError        a request over a size limit (413)
    +-- OverloadedError          a bounded queue is full (the HTTP service answers 429)
    +-- UnavailableError         the inference worker is not running (503)
    +-- AuthError                no API key, or the wrong one (401)
    +-- UnknownModelError        a request names a model this server does not serve (404)
    +-- ConfigError              an option out of range or an impossible combination
    ParityError (embedrt.export) the exported graph disagrees with sentence-transformers

Messages say what failed, what was expected, and how to fix it.
"""

from __future__ import annotations


class EmbedrtError(Exception):
    """Base class of all embedrt errors."""


class ModelLoadError(EmbedrtError):
    """The artifact directory cannot be loaded: a file is missing, corrupted or malformed."""


class ProviderError(EmbedrtError):
    """The requested execution provider is not available, or ONNX Runtime did not activate it."""


class InputError(EmbedrtError, TypeError):
    """Texts passed to encode() are not a string or a sequence of strings."""


class TooLargeError(InputError):
    """A request over a size limit: body bytes, inputs per request, or tokens with truncate off."""


class OverloadedError(EmbedrtError):
    """A bounded queue is full; retry later."""


class UnavailableError(EmbedrtError):
    """The scheduler is not running (not started, shutting down, or its worker died)."""


class AuthError(EmbedrtError):
    """No API key, or the wrong one, where the server was given a key."""


class UnknownModelError(EmbedrtError):
    """A request names a model this server does not serve."""


class ConfigError(EmbedrtError, ValueError):
    """An option has an invalid value, or the artifact cannot satisfy it."""


class MissingExtraError(EmbedrtError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""


# The `embedrt` command's exit status for each kind of failure: what was asked (options,
# input), what it runs on (artifact, device, an extra), and the files around it.
EXIT_ASKED = 2
EXIT_SETUP = 3
EXIT_IO = 4


def exit_status(error: EmbedrtError) -> int:
    """The exit status the CLI gives an error (EXIT_ASKED, EXIT_SETUP)."""
    setup = (ModelLoadError, ProviderError, MissingExtraError, UnavailableError)
    return EXIT_SETUP if isinstance(error, setup) else EXIT_ASKED


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, as a client or a file's author would call it
    ("number", "array", ...), for messages about input of the wrong type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def missing_extra(module: str, extra: str) -> MissingExtraError:
    """The error for an import that needs an extra, naming the exact pip command."""
    return MissingExtraError(
        f"{module} is not installed; it comes with embedrt's '{extra}' extra: "
        f"pip install 'embedrt[{extra}]'"
    )
