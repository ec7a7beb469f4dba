"""``python -m plantwire.demo``: the same as ``plantwire demo``."""

import sys

from plantwire.demo.command import main

sys.exit(main())
