"""``python -m tutorial_lib.compress RECIPE``: see :mod:`tutorial_lib.compress.cli`."""

import sys

from tutorial_lib.compress.cli import main

sys.exit(main())
