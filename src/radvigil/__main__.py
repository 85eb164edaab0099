"""``python -m radvigil``: the CLI (how the service starts an out-of-process monitoring run)."""

from radvigil.cli import main

main()
