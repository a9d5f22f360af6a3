"""The pool's A1111 catalog: list routes answered from the workers, and refreshes sent to all of them.

An A1111 client expects one server's answer. The gateway gives it:

    /samplers, /schedulers,         the first worker that answers (``first_answer``): every worker runs
    /options                        the same code, so any one is the pool's answer
    /sd-models, /loras, /sd-vae,    every available worker is asked at once (``ask_each``) and the
    /prompt-styles, /upscalers,     lists are joined by name (``union_by``): the first worker's list,
    /latent-upscale-modes,          in its order, then what only others have. When the workers agree
    /realesrgan-models,             (same spec, same files) that is exactly one worker's answer; while
    /face-restorers,                they disagree (a rollout, a refresh that reached only some, GPU
    /hypernetworks, /script-info,   models with different files) the client sees every name some
    /extensions                     worker can apply. Each entry gains
                                    ``"sdxlpool": {"gpus": [...]}``: the GPU models (backend ``gpu``)
                                    of the workers that listed it. A1111 clients read the keys they
                                    know and ignore others (webuiapi returns the JSON as is;
                                    SillyTavern and Open WebUI map ``name``/``title``/``model_name``)
    /scripts                        ``{"txt2img": [...], "img2img": [...]}`` joined per key
                                    (``union_scripts``; names are strings, so no GPU models there)
    /embeddings                     the same, per A1111's ``{"loaded": {...}, "skipped": {...}}``:
                                    loaded anywhere is loaded (``union_embeddings``), with the GPU
                                    models that loaded (or skipped) each
    /memory                         the gateway's own ``ram`` (it has no ``cuda``) and every worker's
                                    answer under ``sdxlpool.workers`` (``pool_memory``)
    POST /refresh-loras,            sent to every worker, answered once all have replied
    /refresh-vae,                   (``refresh_outcome``): 200 when each refreshed, else 502 naming
    /refresh-checkpoints            each worker that did not and why

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
    "POOL_KEY",
    "Reply",
    "ask",
    "ask_each",
    "first_answer",
    "pool_memory",
    "refresh_outcome",
    "union_by",
    "union_embeddings",
    "union_scripts",
]

POOL_KEY = "sdxlpool"
"""The key sdxlpool adds to an A1111 entry or answer for what only a pool knows."""


@dataclass(frozen=True)
class Reply:
    """One worker's answer: `status` 0 when it gave none (`problem` says why); `gpu` is the
    worker's GPU model (its backend's canonical slug, e.g. ``a100-80gb``)."""

    backend: str
    status: int
    body: Any = None
    problem: str = ""
    gpu: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.problem


async def ask(client: httpx.AsyncClient, state: BackendState, method: str, path: str, *, timeout: float) -> Reply:
    """`method path` on one worker; never raises for the worker's failures, they are in the Reply."""
    name, gpu = state.backend.name, state.backend.gpu
    try:
        response = await client.request(method, state.backend.url + path, timeout=timeout)
    except httpx.TimeoutException:
        return Reply(name, 0, problem=f"no answer within {timeout:g} s", gpu=gpu)
    except httpx.HTTPError as exc:
        return Reply(name, 0, problem=f"no answer ({type(exc).__name__}: {exc})" if str(exc) else
                     f"no answer ({type(exc).__name__})", gpu=gpu)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        detail = body.get("detail") if isinstance(body, dict) else None
        return Reply(name, response.status_code, body, f"HTTP {response.status_code}" + (f": {detail}" if detail else ""),
                     gpu=gpu)
    if body is None and response.content.strip() not in (b"null",):
        return Reply(name, response.status_code, None, "answer is not JSON", gpu=gpu)
    return Reply(name, response.status_code, body, gpu=gpu)


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


def _with_gpus(entry: dict[str, Any], gpus: Iterable[str]) -> dict[str, Any]:
    """A copy of `entry` with ``sdxlpool.gpus`` (sorted, each once); other ``sdxlpool`` keys are kept."""
    extra = entry.get(POOL_KEY)
    return {**entry, POOL_KEY: {**(extra if isinstance(extra, dict) else {}), "gpus": sorted(set(gpus))}}


def union_by(*keys: str) -> Callable[[Sequence[Reply]], list[dict[str, Any]]]:
    """Join A1111 list answers by the value of `keys` (``name``; ``name`` and ``is_img2img`` for
    script-info): first seen wins, order kept; each entry with the GPU models that listed it.
    An entry without the first key, and an answer that is not a list, add nothing."""

    def join(replies: Sequence[Reply]) -> list[dict[str, Any]]:
        first: dict[tuple[Any, ...], dict[str, Any]] = {}
        gpus: dict[tuple[Any, ...], list[str]] = {}
        for reply in replies:
            for item in reply.body if isinstance(reply.body, list) else ():
                if not isinstance(item, dict) or item.get(keys[0]) is None:
                    continue
                identity = tuple(_hashable(item.get(key)) for key in keys)
                first.setdefault(identity, item)
                gpus.setdefault(identity, []).append(reply.gpu)
        return [_with_gpus(item, gpus[identity]) for identity, item in first.items()]

    return join


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def union_embeddings(replies: Sequence[Reply]) -> dict[str, dict[str, Any]]:
    """A1111's ``{"loaded": {name: ...}, "skipped": {name: ...}}`` joined: loaded by any worker is
    loaded; skipped only where no worker loaded it. Each entry with the GPU models that loaded it
    (skipped: that skipped it)."""
    joined: dict[str, dict[str, dict[str, Any]]] = {}
    for part in ("loaded", "skipped"):
        first: dict[str, Any] = {}
        gpus: dict[str, list[str]] = {}
        for reply in replies:
            entries = reply.body.get(part) if isinstance(reply.body, dict) else None
            for name, entry in (entries.items() if isinstance(entries, dict) else ()):
                first.setdefault(name, entry)
                gpus.setdefault(name, []).append(reply.gpu)
        joined[part] = {name: _with_gpus(entry, gpus[name]) if isinstance(entry, dict) else entry
                        for name, entry in first.items()}
    loaded = joined["loaded"]
    return {"loaded": loaded, "skipped": {name: e for name, e in joined["skipped"].items() if name not in loaded}}


def union_scripts(replies: Sequence[Reply]) -> dict[str, list[str]]:
    """A1111's ``{"txt2img": [names], "img2img": [names]}`` joined per key: first seen wins, order kept."""
    joined: dict[str, list[str]] = {"txt2img": [], "img2img": []}
    for reply in replies:
        for tab, names in (reply.body.items() if isinstance(reply.body, dict) else ()):
            into = joined.setdefault(tab, [])
            into += [name for name in (names if isinstance(names, list) else ())
                     if isinstance(name, str) and name not in into]
    return joined


def pool_memory(own_ram: dict[str, Any], replies: Sequence[Reply]) -> dict[str, Any]:
    """The gateway's A1111 ``/memory``: its own ``ram``, no ``cuda`` of its own (A1111's
    ``{"error": "unavailable"}``), and ``sdxlpool.workers``: worker name -> its A1111 answer, or
    ``{"error": why}`` for one that gave none."""
    workers = {reply.backend: reply.body if reply.ok and isinstance(reply.body, dict) else
               {"error": reply.problem or "answer is not an object"} for reply in replies}
    return {"ram": own_ram, "cuda": {"error": "unavailable"}, POOL_KEY: {"workers": workers}}


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
