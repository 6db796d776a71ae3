"""``python -m qkernels ...``: the command line (see ``python -m qkernels --help``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
