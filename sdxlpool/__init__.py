"""sdxlpool: serve SDXL from a pool of mixed NVIDIA GPUs."""

__version__ = "0.1.0"
