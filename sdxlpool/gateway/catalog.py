"""The pool's A1111 catalog: list routes answered from the workers, and refreshes sent to all of them.

An A1111 client expects one server's answer. The gateway gives it:

    /samplers, /schedulers,         the first worker that answers (``first_answer``): every worker runs
    /sd-models, /options            the same code on the same model, so any one is the pool's answer
    /loras, /sd-vae,                every available worker is asked at once (``ask_each``) and the
    /prompt-styles                  lists are joined by name (``union_by``): the first worker's list,
                                    in its order, then what only others have. When the workers agree
                                    (same spec, same files) that is exactly one worker's answer; while
                                    they disagree (a rollout, a refresh that reached only some) the
                                    client sees every name some worker can apply
    /embeddings                     the same, per A1111's ``{"loaded": {...}, "skipped": {...}}``:
                                    loaded anywhere is loaded (``union_embeddings``)
    POST /refresh-loras             sent to every worker, answered once all have replied
                                    (``refresh_outcome``): 200 when each refreshed, else 502 naming
                                    each worker that did not and why

The I/O is two thin functions over httpx; what an answer becomes is pure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sdxlpool.gateway.backends import BackendState

__all__ = [
    "Reply",
    "ask",
    "ask_each",
    "first_answer",
    "refresh_outcome",
    "union_by",
    "union_embeddings",
]


@dataclass(frozen=True)
class Reply:
    """One worker's answer: `status` 0 when it gave none (`problem` says why)."""

    backend: str
    status: int
    body: Any = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.problem


async def ask(client: httpx.AsyncClient, state: BackendState, method: str, path: str, *, timeout: float) -> Reply:
    """`method path` on one worker; never raises for the worker's failures, they are in the Reply."""
    name = state.backend.name
    try:
        response = await client.request(method, state.backend.url + path, timeout=timeout)
    except httpx.TimeoutException:
        return Reply(name, 0, problem=f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Reply(name, 0, problem=f"no answer ({type(exc).__name__}: {exc})" if str(exc) else
                     f"no answer ({type(exc).__name__})")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        detail = body.get("detail") if isinstance(body, dict) else None
        return Reply(name, response.status_code, body, f"HTTP {response.status_code}" + (f": {detail}" if detail else ""))
    if body is None and response.content.strip() not in (b"null",):
        return Reply(name, response.status_code, None, "answer is not JSON")
    return Reply(name, response.status_code, body)


async def first_answer(client: httpx.AsyncClient, states: Iterable[BackendState], path: str, *,
                       timeout: float) -> Reply | None:
    """GET `path` from one worker after another (in the order given) until one answers 200."""
    for state in states:
        reply = await ask(client, state, "GET", path, timeout=timeout)
        if reply.ok:
            return reply
    return None


async def ask_each(client: httpx.AsyncClient, states: Sequence[BackendState], method: str, path: str, *,
                   timeout: float) -> list[Reply]:
    """`method path` on every worker at once; the replies in the order of `states`."""
    return list(await asyncio.gather(*(ask(client, state, method, path, timeout=timeout) for state in states)))


# --- what the answers become (pure) ----------------------------------------------------------------


def union_by(key: str) -> Callable[[Sequence[Any]], list[Any]]:
    """Join A1111 list answers by `key` (``name``, ``model_name``): first seen wins, order kept."""

    def join(answers: Sequence[Any]) -> list[Any]:
        seen: set[Any] = set()
        joined = []
        for answer in answers:
            for item in answer if isinstance(answer, list) else ():
                name = item.get(key) if isinstance(item, dict) else None
                if name is None or name in seen:
                    continue
                seen.add(name)
                joined.append(item)
        return joined

    return join


def union_embeddings(answers: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """A1111's ``{"loaded": {name: ...}, "skipped": {name: ...}}`` joined: loaded by any worker is
    loaded; skipped only where no worker loaded it."""
    loaded: dict[str, Any] = {}
    skipped: dict[str, Any] = {}
    for part, into in (("loaded", loaded), ("skipped", skipped)):
        for answer in answers:
            entries = answer.get(part) if isinstance(answer, dict) else None
            for name, entry in (entries.items() if isinstance(entries, dict) else ()):
                into.setdefault(name, entry)
    return {"loaded": loaded, "skipped": {name: entry for name, entry in skipped.items() if name not in loaded}}


def refresh_outcome(replies: Sequence[Reply], what: str) -> tuple[int, dict[str, Any]]:
    """(status, body) of a refresh sent to every worker: 200 when each one did it; otherwise 502
    with ``error``/``detail`` naming those that did not, and why. Both list ``refreshed`` and
    ``failed`` (worker name -> reason)."""
    refreshed = [reply.backend for reply in replies if reply.ok]
    failed = {reply.backend: reply.problem or f"HTTP {reply.status}" for reply in replies if not reply.ok}
    body: dict[str, Any] = {"refreshed": refreshed, "failed": failed}
    if not failed:
        return 200, body
    reasons = "; ".join(f"{name}: {problem}" for name, problem in failed.items())
    detail = f"{len(failed)} of {len(replies)} workers did not refresh their {what} ({reasons})"
    return 502, {"error": "refresh_incomplete", "detail": detail, **body}
