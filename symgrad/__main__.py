"""``python -m symgrad`` runs the command line."""

from symgrad.cli import main

raise SystemExit(main())
