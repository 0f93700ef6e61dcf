"""``python -m device`` is the ``roompulse`` command."""

import sys

from device.cli import main

sys.exit(main())
