"""Backends (the workers the gateway may send to) and the live state it keeps about each.

Pure data: no I/O, and every method that needs the time takes it as `now` (seconds on one
monotonic clock), so tests drive time by hand.

`Backend` is one entry of the static backends file (or one discovered pod)::

    backends:
      - name: a100-1
        url: http://127.0.0.1:7861
        gpu: A100                # any spelling; stored as the canonical slug ("a100")
        provider: Foundry Staking
        location: US-East
        type: sdxlpool           # or a1111: a plain A1111 server without /metrics
        pricePerHour: 1.10       # optional, for the cost scorer

`BackendState` is what the gateway's loops update and the routing plugins read:

* `metrics` / `scraped_at`: the last good scrape of the worker's /metrics, and when it was sent;
* `circuit`: a circuit breaker (`Circuit`), closed -> open -> half-open -> closed;
* the gateway's own dispatches, for the work the last scrape cannot show yet (`unseen_cost`);
* the dispatches other gateway replicas announced (`peer_dispatch`, `sdxlpool.gateway.peers`), for the
  same reason.

How `unseen_cost` avoids piling a burst onto one worker
-------------------------------------------------------
Scrapes come every 100 ms; requests can arrive much faster. Every dispatch is recorded with its
time, and removed again by `complete`. A dispatch made *after* the last scrape was sent cannot be
in that scrape's `pending_steps`, so it counts in full on top of it; one made *before* is assumed
to be in it already (the worker queues a job as soon as the request arrives), except within
`IN_TRANSIT_SECONDS` of the scrape, when the request may still have been on the wire, or when the
scrape counted fewer requests on the worker than the gateway has in flight there: its newest ones
sent within `LATE_SECONDS` before the scrape then count too (a loaded machine's slow wire). So the
second request of a burst sees the first one's work on the worker it went to, and goes elsewhere.
Backends without scraped metrics (type a1111, or not scraped yet) have no other load signal: all of
the gateway's in-flight work counts, and `inflight` is their in-flight request count.

Other replicas' dispatches
--------------------------
With several gateway replicas, each one knows only its own dispatches, so between two scrapes two
replicas may both send to the worker that looked idle. A replica that hears of another's dispatch
(`peer_dispatch(cost, now)`, `now` on its own clock, when the message arrived: replicas' monotonic
clocks are not comparable) counts it by the same rule as its own: in `unseen_cost` while the last
scrape was sent before it arrived (less `IN_TRANSIT_SECONDS`). It is forgotten once a scrape sent
after it has landed (its work is then in `pending_steps`, or done) -- peers never announce the
end of a request -- and after `PEER_DISPATCH_MAX_AGE` seconds in any case, so the record stays
small when scrapes stop; at most `PEER_DISPATCHES_KEPT` are kept. Peer dispatches are not this
gateway's requests: `inflight` and `inflight_cost` leave them out. A plain A1111 backend ignores
them: it is never scraped, so nothing would ever say their work was done.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from sdxlpool.api.gpu import display_name, normalize_gpu_name
from sdxlpool.gateway.worker_metrics import WorkerMetrics

__all__ = ["Backend", "BackendKind", "BackendState", "Circuit", "CircuitState", "IN_TRANSIT_SECONDS", "LATE_SECONDS",
           "PEER_DISPATCH_MAX_AGE", "PEER_DISPATCHES_KEPT"]

BackendKind = Literal["sdxlpool", "a1111"]
CircuitState = Literal["closed", "open", "half-open"]

# A request dispatched this shortly before a scrape was sent may not have reached the worker when
# it answered; it still counts as unseen.
IN_TRANSIT_SECONDS = 0.05
# On a loaded machine a request can take longer than that to reach the worker's queue. One sent up to
# this long before a scrape, and beyond the count of requests the scrape says the worker held, is
# still counted: on its way there, not done (in one CI run a burst's next requests otherwise went to
# the worker that looked idle: 3 of 4 on one of two workers).
LATE_SECONDS = 0.5
# A scrape normally clears another replica's dispatch within one scrape interval (100 ms); these
# bound the record when scrapes stop (a worker unreachable, a scraper stuck): by age, and by count
# for a flood of announcements.
PEER_DISPATCH_MAX_AGE = 10.0
PEER_DISPATCHES_KEPT = 10_000

_FIELDS = ("name", "url", "gpu", "provider", "location", "type", "pricePerHour")


@dataclass(frozen=True)
class Backend:
    name: str
    url: str  # no trailing slash
    gpu: str  # canonical slug, e.g. "a100-80gb" (sdxlpool.api.gpu.normalize_gpu_name)
    provider: str = ""
    location: str = ""
    kind: BackendKind = "sdxlpool"
    price_per_hour: float | None = None

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any]) -> Backend:
        """One entry of the backends file; `ValueError` naming the field that is wrong."""
        if not isinstance(entry, Mapping):
            raise ValueError(f"expected a mapping with fields {', '.join(_FIELDS)}, got {type(entry).__name__}")
        unknown = sorted(str(key) for key in entry if key not in _FIELDS)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field (allowed: {', '.join(_FIELDS)})")
        for key in ("name", "url", "gpu"):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{key}: required, a non-empty string")
        url = entry["url"].strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url: must be an http:// or https:// URL with a host, got {entry['url']!r}")
        try:
            gpu = normalize_gpu_name(entry["gpu"])
        except ValueError as exc:
            raise ValueError(f"gpu: {exc}") from None
        for key in ("provider", "location"):
            value = entry.get(key)
            if value is not None and not isinstance(value, str | int | float):
                raise ValueError(f"{key}: must be text, got {type(value).__name__}")
        kind = entry.get("type", "sdxlpool")
        kind = kind.strip().lower() if isinstance(kind, str) else kind
        if kind not in ("sdxlpool", "a1111"):
            raise ValueError(f"type: must be sdxlpool or a1111, got {entry.get('type')!r}")
        price = entry.get("pricePerHour")
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float)
                                  or not math.isfinite(price) or price < 0):
            raise ValueError(f"pricePerHour: must be a number >= 0, got {price!r}")
        return cls(
            name=entry["name"].strip(),
            url=url,
            gpu=gpu,
            provider=str(entry.get("provider") or "").strip(),
            location=str(entry.get("location") or "").strip(),
            kind=cast(BackendKind, kind),  # one of the two: checked above
            price_per_hour=float(price) if price is not None else None,
        )

    @property
    def gpu_display(self) -> str:
        """Human label of the GPU model: "A100 80GB", "RTX 3090"."""
        return display_name(self.gpu)


@dataclass
class Circuit:
    """A circuit breaker: skip a backend that just failed, and let it back in carefully.

    ::

        closed --failure--> open (for the backoff) --time passes--> half-open
        half-open --success--> closed          half-open --failure--> open, backoff doubled

    The backoff is 1 s after the first failure, then doubles per failure in a row, up to 30 s. A
    failure or success reported while the circuit is open changes nothing (the scraper keeps
    reporting while the worker is down; only what happens after the retry time counts). When
    half-open, one request may probe the backend: `begin_probe` (called by `BackendState.dispatch`)
    makes it unavailable to others until that request ends, or until `backoff_max` has passed. A
    good scrape in the half-open state closes the circuit too.
    """

    backoff_min: float = 1.0
    backoff_max: float = 30.0
    failures: int = 0  # in a row
    open_until: float | None = None  # None: closed
    probe_since: float | None = None  # a request probing the half-open circuit, since when

    def state(self, now: float) -> CircuitState:
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until else "half-open"

    def available(self, now: float) -> bool:
        state = self.state(now)
        if state == "half-open":
            return self.probe_since is None or now - self.probe_since >= self.backoff_max
        return state == "closed"

    def backoff(self, failures: int) -> float:
        """Seconds the circuit stays open after `failures` failures in a row."""
        if failures <= 0:
            return 0.0
        return min(self.backoff_max, self.backoff_min * 2.0 ** min(failures - 1, 32))

    def record_failure(self, now: float) -> None:
        if self.state(now) == "open":
            return
        self.failures += 1
        self.open_until = now + self.backoff(self.failures)
        self.probe_since = None

    def record_success(self, now: float) -> None:
        if self.state(now) == "open":
            return
        self.failures = 0
        self.open_until = None
        self.probe_since = None

    def begin_probe(self, now: float) -> None:
        if self.state(now) == "half-open":
            self.probe_since = now

    def end_probe(self) -> None:
        self.probe_since = None


@dataclass(frozen=True)
class _Dispatch:
    cost: float
    at: float


@dataclass
class BackendState:
    backend: Backend
    metrics: WorkerMetrics | None = None
    scraped_at: float | None = None  # when the scrape that produced `metrics` was sent
    circuit: Circuit = field(default_factory=Circuit)
    refused_at: float | None = None  # when it last answered 503 queue_full (its --max-queue is not scraped)
    _dispatched: list[_Dispatch] = field(default_factory=list, repr=False)  # oldest first
    # Other replicas' dispatches, by arrival on this gateway's clock: oldest first.
    _peer_dispatched: deque[_Dispatch] = field(default_factory=lambda: deque(maxlen=PEER_DISPATCHES_KEPT),
                                               repr=False)

    @property
    def name(self) -> str:
        return self.backend.name

    # -- circuit breaker ---------------------------------------------------------------------

    def available(self, now: float) -> bool:
        """False while the circuit is open (or half-open with a probe already under way)."""
        return self.circuit.available(now)

    def record_failure(self, now: float) -> None:
        self.circuit.record_failure(now)

    def record_success(self, now: float) -> None:
        self.circuit.record_success(now)

    # -- a full worker queue ------------------------------------------------------------------

    def record_full(self, now: float) -> None:
        """The worker refused a request with `queue_full`: busy, not broken."""
        self.refused_at = now

    def known_full(self) -> bool:
        """Refused for a full queue, and no scrape sent since then says how its queue is now."""
        return self.refused_at is not None and (self.scraped_at is None or self.scraped_at <= self.refused_at)

    # -- the gateway's own accounting --------------------------------------------------------

    def dispatch(self, cost: float, now: float) -> None:
        """The gateway sends a request of `cost` normalised steps to this backend now."""
        self._dispatched.append(_Dispatch(float(cost), now))
        self.circuit.begin_probe(now)

    def complete(self, cost: float) -> None:
        """A request sent by `dispatch` ended (whatever the outcome).

        Removes the oldest dispatch of that cost: workers run jobs first come, first served, so
        the oldest is the one most likely to be gone from the worker's own pending_steps too.
        """
        for i, item in enumerate(self._dispatched):
            if math.isclose(item.cost, cost, rel_tol=1e-9, abs_tol=1e-12):
                del self._dispatched[i]
                break
        self.circuit.end_probe()

    @property
    def inflight(self) -> int:
        """Requests this gateway has in flight on the backend (a1111's only load signal)."""
        return len(self._dispatched)

    @property
    def inflight_cost(self) -> float:
        """Normalised steps this gateway has in flight on the backend."""
        return sum(item.cost for item in self._dispatched)

    # -- other gateway replicas' dispatches ----------------------------------------------------

    def peer_dispatch(self, cost: float, now: float) -> None:
        """Another gateway replica sent a request of `cost` normalised steps here; heard `now`.

        Counts in `unseen_cost` until a scrape sent after `now` lands (or `PEER_DISPATCH_MAX_AGE`
        passes); never in `inflight`. Ignored by a plain A1111 backend: it is never scraped, so no
        scrape would ever clear it.
        """
        if self.backend.kind == "a1111":
            return
        self._forget_seen_peer_dispatches(now)
        self._peer_dispatched.append(_Dispatch(float(cost), now))

    def _forget_seen_peer_dispatches(self, now: float) -> None:
        """Drop the peer dispatches the last scrape includes, and those too old to matter."""
        too_old = now - PEER_DISPATCH_MAX_AGE
        seen_until = self._seen_until()
        cutoff = too_old if seen_until is None else max(seen_until, too_old)
        peers = self._peer_dispatched
        while peers and peers[0].at <= cutoff:  # arrival order: the forgotten ones are a prefix
            peers.popleft()

    def _seen_until(self) -> float | None:
        """Work dispatched up to this time is in the last scrape; None: no scrape to include any."""
        if self.metrics is None or self.scraped_at is None:
            return None
        return self.scraped_at - IN_TRANSIT_SECONDS

    def unseen_cost(self, now: float) -> float:
        """Normalised steps sent here that the last scraped `pending_steps` cannot include yet.

        Without scraped metrics (type a1111, or never scraped) that is everything in flight from
        this gateway; otherwise what it dispatched after the scrape was sent, less
        `IN_TRANSIT_SECONDS`, or its requests late on the wire (`_late_cost`) if more. Other replicas' dispatches count by the same rule, by the time they
        were heard (and for at most `PEER_DISPATCH_MAX_AGE` seconds before `now`).
        """
        self._forget_seen_peer_dispatches(now)
        peers = sum(item.cost for item in self._peer_dispatched)
        seen_until = self._seen_until()
        if self.backend.kind == "a1111" or seen_until is None:
            return self.inflight_cost + peers
        after = sum(item.cost for item in self._dispatched if item.at > seen_until)
        return max(after, self._late_cost()) + peers

    def _late_cost(self) -> float:
        """This gateway's newest requests beyond the number the worker held (running and queued) at the
        last scrape, sent within `LATE_SECONDS` before it: on their way there. (An older one the worker
        no longer holds is done, its answer on the way back.)"""
        assert self.metrics is not None and self.scraped_at is not None
        held = max(0, round(self.metrics.inflight + self.metrics.queue_depth))
        since = self.scraped_at - LATE_SECONDS
        return sum(item.cost for item in self._dispatched[held:] if item.at > since)
