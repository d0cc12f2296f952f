"""`python -m ttrlab`: the `ttrlab` command."""
import sys

from ttrlab.cli import main

sys.exit(main())
