"""``python -m worker.cli``: the ``bertjobs`` command."""
import sys

from worker.cli import main

sys.exit(main())
