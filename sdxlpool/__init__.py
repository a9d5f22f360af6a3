"""sdxlpool: serve SDXL from a pool of mixed NVIDIA GPUs.

The parts and how they fit: docs/architecture.md; every flag, route, metric and CRD field:
docs/reference/.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # The one version string is pyproject's, as installed; `sdxlpool --version` and the apps print this.
    __version__ = version("sdxlpool")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0.0.0+unknown"
