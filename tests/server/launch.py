"""Starts `mldeploy` in a server process of the tests, with the planted faces@flaky version registered."""

import sys

from tests.rollout import flaky

flaky.install()

from mldeploy.cli import main  # noqa: E402

sys.argv = ["mldeploy", *sys.argv[1:]]
main()
