"""`python -m chronos_core ...` is the `chronos` command."""

from chronos_core.cli import main

raise SystemExit(main())
