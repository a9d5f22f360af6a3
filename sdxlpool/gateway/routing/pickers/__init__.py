"""Pickers: choose one backend from the weighted totals."""

from sdxlpool.gateway.routing.pickers.best import Best

__all__ = ["Best"]
