"""`python -m ttrlab.cli`: the `ttrlab` command."""
import sys

from ttrlab.cli import main

sys.exit(main())
