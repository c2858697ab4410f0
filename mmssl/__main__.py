"""``python -m mmssl``: the same as the ``mmssl`` command."""

import sys

from mmssl.cli import main

sys.exit(main())
