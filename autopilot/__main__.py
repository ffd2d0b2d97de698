"""``python -m autopilot``: see autopilot/cli.py and docs/cli.md."""

import sys

from autopilot.cli import main

if __name__ == "__main__":
    sys.exit(main())
