"""Entry point of the frozen GUI (PyInstaller needs a script, not a console_scripts entry)."""

from desktop.ui.app import main

raise SystemExit(main())
