"""Tollway: self-hosted API management for Python APIs."""

__version__ = "0.1.0"
