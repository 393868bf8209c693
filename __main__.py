"""`python -m photo_avatar`: the command line."""

from .core.cli import main

raise SystemExit(main())
