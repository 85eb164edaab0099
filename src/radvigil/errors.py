"""The radvigil exception tree.

    RadvigilError            base of every error radvigil raises on purpose
    ├── ConfigError          a setting, task or YAML file is invalid
    ├── InputError           an image or request the caller sent cannot be used
    │   ├── UnsupportedFormatError  not PNG, JPEG or DICOM by its magic bytes
    │   └── ImageTooLargeError      decoding would exceed the pixel or memory budget
    ├── DataError            a dataset, manifest or version is missing or inconsistent
    ├── ModelError           a model cannot be built, trained, exported or loaded
    ├── RegistryError        the MLflow tracking server or registry failed
    ├── StoreError           the metadata database failed
    │   └── StoreUnavailableError  the database cannot be reached (retry later)
    ├── NotFoundError        a named object (version, prediction, key) does not exist
    ├── ConflictError        the object already exists (e.g. an API key name is taken)
    ├── AuthError            no valid API key was presented
    ├── ForbiddenError       the key's role may not perform the action
    ├── DeliveryError        a PACS or RIS did not take a result object (retried by the outbox)
    │   └── DeliveryRejectedError  it refused the object for good (dead-lettered at once)
    └── PacsUnavailableError a PACS could not be searched or read in pull mode (next poll retries)

The CLI turns these into one line on stderr and a non-zero exit code; the service turns them
into an HTTP status and a JSON body ``{code, message}``. Third-party errors are mapped at the
boundary with ``raise XError(...) from exc``.
"""

from __future__ import annotations


class RadvigilError(Exception):
    """Base class: ``code`` is a stable machine-readable name for the error."""

    code = "radvigil_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RadvigilError):
    code = "config_error"


class InputError(RadvigilError):
    code = "invalid_input"


class UnsupportedFormatError(InputError):
    code = "unsupported_media_type"


class ImageTooLargeError(InputError):
    code = "image_too_large"


class DataError(RadvigilError):
    code = "data_error"


class ModelError(RadvigilError):
    code = "model_error"


class RegistryError(RadvigilError):
    code = "registry_error"


class StoreError(RadvigilError):
    code = "store_error"


class StoreUnavailableError(StoreError):
    """Connection-level failure: the data was fine, the database was not there."""

    code = "store_unavailable"


class NotFoundError(RadvigilError):
    code = "not_found"


class ConflictError(RadvigilError):
    code = "conflict"


class AuthError(RadvigilError):
    code = "unauthenticated"


class ForbiddenError(RadvigilError):
    code = "forbidden"


class DeliveryError(RadvigilError):
    code = "delivery_failed"


class DeliveryRejectedError(DeliveryError):
    """The receiver refused the object itself (e.g. FHIR 400, HL7 AR): retrying cannot help."""

    code = "delivery_rejected"


class PacsUnavailableError(RadvigilError):
    code = "pacs_unavailable"


class RadvigilWarning(UserWarning):
    """Warnings radvigil emits on purpose (tests turn them into errors)."""
