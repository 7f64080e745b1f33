"""The operators' CLI (``python -m reactor`` or the ``reactor`` console script): see reactor.cli."""

__version__ = "0.1.0"  # pyproject.toml reads it from here
