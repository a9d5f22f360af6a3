"""The gateway tests' fixtures, reused: sim-worker processes (`sims`, indirect-parametrized with
their specs) and three real tiny-model worker processes (`workers`, module-scoped)."""

from tests.gateway.conftest import sims, workers  # noqa: F401 - fixtures, found by pytest by name
