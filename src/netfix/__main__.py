"""``python -m netfix`` (and ``torchrun -m netfix``) runs the command line."""

from .cli import main

raise SystemExit(main())
