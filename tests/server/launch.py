"""Starts `mldeploy` in a server process of the tests, with the planted faces@flaky version registered."""

import sys

from tests.rollout import flaky

flaky.install()

if __name__ == "__main__":  # not when the shadow process (spawned) imports this module
    from mldeploy.cli import main

    sys.argv = ["mldeploy", *sys.argv[1:]]
    main()
