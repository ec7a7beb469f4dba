"""``python -m demo``: the same as ``plantwire demo``."""

import sys

from demo.command import main

sys.exit(main())
