"""The version generated files name in their headers."""

__version__ = "0.1.0"
