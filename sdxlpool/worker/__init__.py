"""The SDXL worker: an AUTOMATIC1111-compatible API on diffusers, with busyness metrics."""
