"""``python -m codesign``: the same command line as the ``codesign`` script."""

import sys

from codesign.cli import main

if __name__ == "__main__":
    sys.exit(main())
