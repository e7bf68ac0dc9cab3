"""``python -m fedmodel``: the ``fedmodel`` command (see :mod:`fedmodel.cli`)."""

import sys

from fedmodel.cli import main

if __name__ == "__main__":  # importing this module (doctest discovery does) runs nothing
    sys.exit(main())
