"""Placeholder until its owner writes it."""
from . import app  # noqa: F401
