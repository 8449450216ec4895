"""``python -m netfix`` (and ``torchrun -m netfix``) runs the command line."""

import os
import sys

# `python -m` puts the current folder first on sys.path; netfix is already imported, and nothing it imports later
# (an installed plugin's entry point) should be shadowed by a file that happens to lie where the command runs
sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]

from .cli import main  # noqa: E402

raise SystemExit(main())
