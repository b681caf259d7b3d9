"""Entry point of the frozen CLI."""

from desktop.cli import main

raise SystemExit(main())
