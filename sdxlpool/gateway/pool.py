"""The live set of backends and their state, as discovery reports them."""

from __future__ import annotations

from collections.abc import Iterable

from sdxlpool.gateway.backends import Backend, BackendState

__all__ = ["BackendPool"]


class BackendPool:
    def __init__(self) -> None:
        self._states: dict[str, BackendState] = {}

    def update(self, backends: Iterable[Backend]) -> None:
        """Apply a new list: unchanged backends keep their live state, others start fresh."""
        fresh: dict[str, BackendState] = {}
        for backend in backends:
            current = self._states.get(backend.name)
            fresh[backend.name] = current if current is not None and current.backend == backend else BackendState(
                backend=backend)
        self._states = fresh

    def states(self) -> list[BackendState]:
        return list(self._states.values())

    def get(self, name: str) -> BackendState | None:
        return self._states.get(name)

    def __len__(self) -> int:
        return len(self._states)
