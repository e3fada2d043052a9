"""The one exception hierarchy of EPT Studio.

Every message is written for the person at the keyboard: it names the file or setting at fault and
says what to do. Library errors are re-raised as one of these with ``raise ... from err``.
"""

from __future__ import annotations


class EptStudioError(Exception):
    """Base of every error EPT Studio raises on purpose."""


class ConfigError(EptStudioError, ValueError):
    """A setting is out of range or inconsistent with another one."""


class BackboneError(EptStudioError):
    """A backbone cannot be resolved, verified or loaded."""


class BackboneNotAvailableError(BackboneError):
    """The backbone's weights are not on this machine (and no download was asked for)."""


class ChecksumMismatchError(BackboneError):
    """A file's sha256 is not the one expected."""


class PromptFileError(EptStudioError):
    """A prompt file is malformed, hostile, or does not fit the backbone it is loaded onto."""


class BackboneMismatchError(PromptFileError):
    """A prompt file was tuned on other backbone weights than the ones loaded (sha256 differs)."""


class ImageDecodeError(EptStudioError):
    """An image file cannot be decoded; the message names the file and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DatasetError(EptStudioError):
    """A folder of images cannot be used as a labelled set (no classes, too few images, ...)."""


class TrainingError(EptStudioError):
    """Training stopped for a reason the user must act on (for example a non-finite loss)."""


class TrainingCancelled(EptStudioError):
    """The user cancelled a run; not a failure."""


class DeviceError(EptStudioError):
    """The requested compute device is not available."""


class ProjectError(EptStudioError):
    """A project folder cannot be created, opened or changed as asked (the message says why)."""


class RunRecordError(EptStudioError):
    """A run record cannot be read: missing, not JSON, incomplete, or of a format not read here."""


class ExportError(EptStudioError):
    """An export (ONNX model, overlay images) could not be written or failed its own check."""


class ParityError(ExportError):
    """An exported ONNX model does not reproduce the torch model within the tolerances."""


class OnnxModelError(EptStudioError):
    """An ONNX file cannot be used: missing, corrupt, not exported by EPT Studio, or it failed to run."""
