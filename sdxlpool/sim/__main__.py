"""`python -m sdxlpool.sim FLAGS`: the same as `sdxlpool sim-worker FLAGS`, for benchmarks and tests."""

import sys

from sdxlpool.cli import main

sys.exit(main(["sim-worker", *sys.argv[1:]]))
