"""Every error sdxlpool raises on purpose, so callers know which level to catch.

Each class is defined next to the code that raises it (module on the right); all join this tree,
and tests/test_errors.py keeps this drawing and the code in step.

    SDXLPoolError
    ├── ConfigError               bad command-line flag, setting or file: the CLI prints one line, exits 2
    │   ├── CheckpointError       a model path that is missing, unreadable or not an SDXL checkpoint
    │   ├── PoolSpecError         an SDXLPool spec that does not validate              (api/spec.py; a ValueError)
    │   └── AkashError            a pool or option the Akash SDL cannot express        (akash/sdl.py; a ValueError)
    ├── RequestError              a generation request that cannot be served as asked (HTTP 4xx/5xx, JSON body)
    │   ├── InvalidRequest        a field is malformed or over a limit (422); `.field` names it
    │   │   └── NotApplied        strict mode: something would not be applied (422)      (api/strict.py)
    │   ├── NotFound              an unknown sampler, scheduler or checkpoint (404)
    │   ├── QueueFull             the worker's queue is at its bound (503 + Retry-After)
    │   ├── NotReady              the worker is still loading its pipeline (503)         (worker/deps.py)
    │   ├── ImageEncodingFailed   a made image could not be encoded as PNG (500)        (worker/encoding.py)
    │   ├── Unauthorized          no API key, or an unknown one (401)                    (gateway/api_keys.py)
    │   ├── TooBusy               over a rate limit, or the gateway queue is full (429)  (gateway/admission.py)
    │   │   └── WorkersSaturated  every worker tried had a full queue, answered as 429   (gateway/service.py)
    │   ├── NoWorkerStarted       no worker of a GPU model at zero became ready in time (503)  (gateway/admission.py)
    │   ├── WorkerRejected        a worker's own 4xx, passed on with its status         (gateway/service.py)
    │   ├── ForwardError          the pool could not serve it; `.routing` on request     (gateway/forward.py)
    │   │   ├── NoBackend         no worker of the allowed GPU models is up (503)        (gateway/forward.py)
    │   │   ├── AllAttemptsFailed every worker tried failed (502)                        (gateway/forward.py)
    │   │   └── WorkersFull       every worker tried had a full queue (429)              (gateway/forward.py)
    │   └── _Rejected             body over --max-body-bytes (413) or stalled (408)      (_limits.py; an HTTPException)
    ├── UpstreamError             a service sdxlpool calls failed or gave no answer: the caller retries or fails over
    │   ├── KubeError             a Kubernetes API call failed; `.status` (0: no answer), `.retryable`  (_kube.py)
    │   ├── BulkError             a worker gave no answer to the gateway's bulk client  (gateway/_bulk.py)
    │   │   ├── BulkTimeout       ... in time                                            (gateway/_bulk.py)
    │   │   └── BulkTransportError  ... because the connection failed                    (gateway/_bulk.py)
    │   ├── TransportError        a worker gave no answer to a txt2img                   (gateway/transport.py)
    │   │   ├── TransportTimeout  ... within the attempt timeout                         (gateway/transport.py)
    │   │   └── TransportFailure  ... refused, reset or closed early                     (gateway/transport.py)
    │   └── _AttemptFailed        one worker's attempt failed: the gateway fails over   (gateway/forward.py)
    ├── ClientError               `sdxlpool generate` got no image; the message says why  (client/_ws.py)
    │   ├── GatewayError          the gateway refused or failed the request (an `error` event)  (client/_ws.py)
    │   ├── GatewayUnreachable    no connection to the gateway, or it dropped           (client/_ws.py)
    │   └── GatewayTimeout        no result in time; the gateway cancels the job        (client/_ws.py)
    └── SimulatedDeviceError      the sim-worker's injected CUDA failure (--fail-rate): HTTP 500 like a real one
                                                                                          (sim/_engine.py; a RuntimeError)

A class that is also a `ValueError`/`RuntimeError`/`HTTPException` keeps that base so the `except`
sites and frameworks that expect it (pydantic validators, FastAPI's body parsing, a worker's
"device failure is a 500") still see it.

Anything else escaping is a bug, not a user error.
"""

from __future__ import annotations

__all__ = [
    "SDXLPoolError",
    "ConfigError",
    "CheckpointError",
    "RequestError",
    "InvalidRequest",
    "NotFound",
    "QueueFull",
    "UpstreamError",
]


class SDXLPoolError(Exception):
    """Base class of every deliberate sdxlpool error."""


class ConfigError(SDXLPoolError):
    """A flag, setting or input file is wrong; the message says which and how to fix it."""


class CheckpointError(ConfigError):
    """A model path is missing, unreadable, or not an SDXL base/refiner checkpoint."""


class RequestError(SDXLPoolError):
    """A request that cannot be served as asked. `status` is the HTTP status to answer with."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(RequestError):
    status = 422
    code = "invalid_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(RequestError):
    status = 404
    code = "not_found"


class QueueFull(RequestError):
    status = 503
    code = "queue_full"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UpstreamError(SDXLPoolError):
    """A service sdxlpool calls (the Kubernetes API server, a worker) failed or did not answer."""
