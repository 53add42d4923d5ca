"""``python -m medseg ...`` is the ``medseg`` command."""

import sys

from medseg.cli import main

sys.exit(main())
