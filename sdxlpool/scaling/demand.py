"""What the gateway tells the autoscaler: the demand it sees and the workers it routes to.

Contract: the JSON body of the gateway's `GET /v1/demand`, read by the operator (in-cluster, one
read per gateway replica, summed with :func:`merge_reports`) and by `sdxlpool up`. Pure data.

Demand is kept per *class*: the set of GPU models the requests allowed (`X-SDXL-GPU` / `gpus`;
empty: any model of the pool), because a request that allows only an H100 cannot be served by
adding an RTX 3090. Rates are normalised steps per second (sdxlpool.api.generation's cost unit:
one 1024x1024 step), so a hires request counts for what it costs.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DemandClass", "DemandReport", "ModelState", "merge_reports"]


class _Report(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # a newer gateway may say more


class DemandClass(_Report):
    """Requests that allowed the same GPU models, over the report's window."""

    allowed: tuple[str, ...] = Field((), description="GPU slugs the requests allowed, sorted; empty: any model.")
    arrivals_per_second: float = Field(0.0, ge=0, description="Requests arriving per second.")
    steps_per_second: float = Field(0.0, ge=0, description="Normalised steps arriving per second.")
    waiting: int = Field(0, ge=0, description="Requests waiting in the gateway's queue now.")
    waiting_steps: float = Field(0.0, ge=0, description="Their normalised steps.")
    oldest_wait_seconds: float = Field(0.0, ge=0, description="How long the oldest of them has waited.")
    steps_cv2: float | None = Field(None, ge=0, description="Squared coefficient of variation (variance / "
                                    "mean^2) of the requests' normalised steps over the window; none: not "
                                    "reported (the autoscaler then assumes exponential job times, M/M/c).")


class ModelState(_Report):
    """The workers of one GPU model, as the gateway sees them now."""

    gpu: str
    workers: int = Field(0, ge=0, description="Workers of this model the gateway knows.")
    ready: int = Field(0, ge=0, description="Of those, ready and taking requests.")
    seconds_per_step: float | None = Field(None, gt=0, description="Median measured seconds per normalised "
                                           "step over the ready workers; none before any measured.")
    pending_steps: float = Field(0.0, ge=0, description="Normalised steps queued or running on them.")
    price_per_hour: float | None = Field(None, ge=0)


class DemandReport(_Report):
    window_seconds: float = Field(60.0, gt=0, description="The window the rates are averaged over.")
    classes: tuple[DemandClass, ...] = ()
    models: tuple[ModelState, ...] = ()
    p95_seconds: float | None = Field(None, ge=0, description="Observed p95 of request seconds over the window.")

    @property
    def mean_request_steps(self) -> float | None:
        """Normalised steps of the average request, over every class; none without arrivals."""
        arrivals = sum(c.arrivals_per_second for c in self.classes)
        return sum(c.steps_per_second for c in self.classes) / arrivals if arrivals > 0 else None

    @property
    def request_steps_cv2(self) -> float | None:
        """Squared coefficient of variation of the request sizes over every class (their second
        moments pooled by arrival rate); none when a class with arrivals does not report it."""
        arrivals = sum(c.arrivals_per_second for c in self.classes)
        if arrivals <= 0:
            return None
        second = 0.0
        for c in self.classes:
            if c.arrivals_per_second <= 0:
                continue
            if c.steps_cv2 is None:
                return None
            mean = c.steps_per_second / c.arrivals_per_second
            second += c.arrivals_per_second * mean * mean * (1 + c.steps_cv2)
        mean = sum(c.steps_per_second for c in self.classes) / arrivals
        return max(0.0, second / arrivals / (mean * mean) - 1) if mean > 0 else None

    def model(self, gpu: str) -> ModelState | None:
        return next((m for m in self.models if m.gpu == gpu), None)


def merge_reports(reports: Iterable[DemandReport]) -> DemandReport:
    """Several gateway replicas' reports as one: each replica saw its own share of the requests
    (rates and queues add up), while all of them scrape the same workers (the most each saw)."""
    reports = list(reports)
    if len(reports) == 1:
        return reports[0]
    classes: dict[tuple[str, ...], dict[str, float]] = {}
    second: dict[tuple[str, ...], float | None] = {}  # per class: sum of arrivals x E[steps^2]; None: unknown
    for report in reports:
        for c in report.classes:
            if c.arrivals_per_second > 0:
                known = second.get(c.allowed, 0.0)
                mean = c.steps_per_second / c.arrivals_per_second
                second[c.allowed] = None if known is None or c.steps_cv2 is None else \
                    known + c.arrivals_per_second * mean * mean * (1 + c.steps_cv2)
            into = classes.setdefault(c.allowed, {"arrivals_per_second": 0.0, "steps_per_second": 0.0, "waiting": 0,
                                                  "waiting_steps": 0.0, "oldest_wait_seconds": 0.0})
            into["arrivals_per_second"] += c.arrivals_per_second
            into["steps_per_second"] += c.steps_per_second
            into["waiting"] += c.waiting
            into["waiting_steps"] += c.waiting_steps
            into["oldest_wait_seconds"] = max(into["oldest_wait_seconds"], c.oldest_wait_seconds)
    models: dict[str, ModelState] = {}
    for report in reports:
        for m in report.models:
            seen = models.get(m.gpu)
            models[m.gpu] = m if seen is None else ModelState(
                gpu=m.gpu, workers=max(seen.workers, m.workers), ready=max(seen.ready, m.ready),
                seconds_per_step=seen.seconds_per_step or m.seconds_per_step,
                pending_steps=max(seen.pending_steps, m.pending_steps),
                price_per_hour=seen.price_per_hour if seen.price_per_hour is not None else m.price_per_hour)
    p95s = [r.p95_seconds for r in reports if r.p95_seconds is not None]
    return DemandReport(
        window_seconds=max((r.window_seconds for r in reports), default=60.0),
        classes=tuple(DemandClass(allowed=allowed, **values, steps_cv2=_cv2(values, second.get(allowed)))
                      for allowed, values in sorted(classes.items())),
        models=tuple(models[gpu] for gpu in sorted(models)),
        p95_seconds=max(p95s) if p95s else None)


def _cv2(values: dict[str, float], second: float | None) -> float | None:
    """A merged class's squared CV of request steps from its pooled second moment."""
    arrivals, steps = values["arrivals_per_second"], values["steps_per_second"]
    if second is None or arrivals <= 0 or steps <= 0:
        return None
    mean = steps / arrivals
    return max(0.0, second / arrivals / (mean * mean) - 1)
