"""`python -m desktop.cli`."""

from desktop.cli.app import main

raise SystemExit(main())
