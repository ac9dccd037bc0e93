"""One module per `netdef` subcommand (see netdef/cli.py)."""
