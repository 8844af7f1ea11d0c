"""``python -m server ...`` = the ``livecoach`` console script."""

import sys

from server.cli import main

sys.exit(main())
