"""Replaying a client's recorded request sequence against a server, step by step.

A sequence is data: each `Step` is the method, path and JSON body a client sends, and `expect`, the
check of what that client then reads from the answer (it raises AssertionError naming the step).
Bodies may be callables of the answers so far, for clients that send back what they read (Open
WebUI posts the options it fetched, with one key changed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Answers = list[Any]


def ok(_: Any) -> None:
    return None


@dataclass(frozen=True)
class Step:
    method: str
    path: str
    body: Any = None  # JSON, or a callable of the answers so far
    expect: Callable[[Any], None] = ok  # what the client reads; the answer is JSON (or None when empty)
    status: int | None = 200  # the client checks `response.ok` (2xx) or ignores it; None: any status
    why: str = field(default="", compare=False)


def replay(base_url: str, steps: list[Step], headers: dict[str, str], timeout: float = 120) -> Answers:
    answers: Answers = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as client:
        for number, step in enumerate(steps, start=1):
            body = step.body(answers) if callable(step.body) else step.body
            response = client.request(step.method, step.path, json=body) if body is not None else \
                client.request(step.method, step.path)
            where = f"step {number}: {step.method} {step.path} ({step.why})"
            assert step.status in (None, response.status_code), f"{where}: {response.status_code} {response.text[:500]}"
            if step.status is None:
                answers.append(None)
                continue
            answer = response.json() if response.content else None
            try:
                step.expect(answer)
            except (AssertionError, KeyError, TypeError, IndexError) as error:
                raise AssertionError(f"{where}: the client cannot read {str(answer)[:500]!r}: {error!r}") from error
            answers.append(answer)
    return answers
