"""`python -m cajajejo.training --config PATH ...`: what torchrun starts in every process."""

import sys

from cajajejo.training import main

if __name__ == "__main__":
    sys.exit(main())
