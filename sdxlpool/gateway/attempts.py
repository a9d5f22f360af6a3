"""What the attempt loop (forward.py) reports: typed records, not strings to be parsed later.

    FailureKind     why an attempt was abandoned: hung, timeout, transport, bad_body, http_5xx,
                    queue_full
    AttemptFailure  one abandoned attempt: worker, attempt number, kind, detail text, seconds
    AttemptStarted  a worker took the request (attempt 1, 2, ... after failovers)
    ProgressSeen    the worker's /progress showed a new step of *this* attempt's job
    AttemptFailed   an attempt was abandoned (carries its `AttemptFailure`)

A `ForwardListener` gets the last three as they happen; `events.stream_listener` turns them into
the WebSocket/NDJSON events, the metrics read `Forwarded.failures`. Pure data: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sdxlpool.gateway.backends import BackendState

__all__ = ["FailureKind", "AttemptFailure", "AttemptStarted", "ProgressSeen", "AttemptFailed", "ForwardEvent",
           "ForwardListener"]


class FailureKind(Enum):
    """Why an attempt was abandoned; the value is the metric label and the log word."""

    HUNG = "hung"  # no progress on /progress for the hang deadline
    TIMEOUT = "timeout"  # no answer within the attempt timeout
    TRANSPORT = "transport"  # refused, reset, closed mid-answer
    BAD_BODY = "bad_body"  # an answer that is not the JSON it should be
    HTTP_5XX = "http_5xx"  # the worker's own server error (a device failure, say)
    QUEUE_FULL = "queue_full"  # 503 queue_full: busy, not broken

    @property
    def worker_fault(self) -> bool:
        """Does this count against the worker's circuit breaker? A full queue does not."""
        return self is not FailureKind.QUEUE_FULL


@dataclass(frozen=True)
class AttemptFailure:
    worker: str  # the backend's name
    attempt: int  # 1 for the first worker tried
    kind: FailureKind
    detail: str  # for people: "no progress for 60s", "HTTP 500: CUDA error", ...
    seconds: float  # from dispatch to giving up

    def __str__(self) -> str:
        """`worker: detail`, as error messages list the workers tried."""
        return f"{self.worker}: {self.detail}"


@dataclass(frozen=True)
class AttemptStarted:
    attempt: int
    state: BackendState
    task_id: str = ""  # the attempt's force_task_id: the job's name in its worker's /progress


@dataclass(frozen=True)
class ProgressSeen:
    attempt: int
    step: int  # denoising step k of n over the whole job (every image of the batch)
    steps: int
    fraction: float  # the worker's own `progress`, 0..1
    eta_seconds: float | None  # the worker's `eta_relative`


@dataclass(frozen=True)
class AttemptFailed:
    failure: AttemptFailure


ForwardEvent = AttemptStarted | ProgressSeen | AttemptFailed
ForwardListener = Callable[[ForwardEvent], None]
