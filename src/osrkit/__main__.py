"""`python -m osrkit ...` (what `torchrun ... -m osrkit train` runs on each rank)."""

import sys

from osrkit.cli import main

sys.exit(main())
