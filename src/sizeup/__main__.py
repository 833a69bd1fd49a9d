"""`python -m sizeup` is the same as the `sizeup` command."""

from sizeup.cli import main

main()
