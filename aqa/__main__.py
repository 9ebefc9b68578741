"""``python -m aqa``: see aqa.cli."""

import sys

from aqa.cli import main

sys.exit(main())
