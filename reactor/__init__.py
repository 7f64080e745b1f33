"""The operators' CLI (``python -m reactor`` or the ``reactor`` console script): see reactor.cli."""
