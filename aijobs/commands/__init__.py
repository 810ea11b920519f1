"""The `aijobs` subcommands, one module per area; aijobs/cli.py parses and dispatches."""
