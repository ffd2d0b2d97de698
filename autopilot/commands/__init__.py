"""One module per command of the ``autopilot`` CLI: its parser (``register``) and what it does; common.py holds
what they share. autopilot/cli.py puts them together."""
