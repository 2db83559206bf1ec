"""`python -m proxy` is the same as the `weston-proxy` command."""

import sys

from proxy.launch import main

if __name__ == "__main__":  # worker processes import this module too
    sys.exit(main())
