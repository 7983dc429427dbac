"""Typed errors. Library code raises these; the CLI turns them into one line and exit code 1.

Messages are single lines that name the offending file or key and the reason, and never carry
patient identifiers.
"""

from __future__ import annotations

from pathlib import Path


class XrayStyleError(Exception):
    """Base class of every error the toolkit raises on purpose."""

    def __init__(self, message: str):
        # One line, always: newlines from wrapped library messages are folded.
        super().__init__(" ".join(str(message).split()))


class InputError(XrayStyleError):
    """An input file cannot be used. ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class UnsupportedImageError(InputError):
    """A readable file whose content the toolkit refuses (RGB, 3-D volume, multi-frame, ...)."""


class MissingDecoderError(InputError):
    """Compressed pixel data whose decoder plugin is not installed."""


class ManifestError(InputError):
    """A cohort manifest or source CSV that fails validation."""


class ConfigError(XrayStyleError):
    """An unknown key or impossible value in a run configuration."""


class CheckpointError(InputError):
    """A checkpoint that cannot be read, fails its checksum or does not match the run."""


class RunFolderInUseError(InputError):
    """A run folder that another training process holds (its lock is taken)."""


class MissingWeightsError(XrayStyleError):
    """Pretrained weights that are not in the local cache (the toolkit never downloads)."""


class TrainingError(XrayStyleError):
    """A training run that has to stop (non-finite loss, too many unreadable images, ...)."""
