"""`python -m edgebnn` runs the CLI."""

from edgebnn.cli import main

raise SystemExit(main())
