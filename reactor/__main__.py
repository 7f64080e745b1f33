"""``python -m reactor``: the operators' CLI (reactor.cli)."""

import sys

from reactor.cli import main

sys.exit(main())
