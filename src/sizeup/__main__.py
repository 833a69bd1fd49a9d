"""`python -m sizeup` is the same as the `sizeup` command."""

from sizeup.cli import main

if __name__ == "__main__":
    main()
