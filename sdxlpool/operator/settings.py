"""The operator's one typed configuration. Flags override environment variables (SDXLPOOL_OPERATOR_*).

Built once, by `sdxlpool operator` (or a test), and handed to the kopf handlers through the
operator's memo and registry (`sdxlpool.operator.handlers.run_operator`): nothing is read from the
environment at import time, so two operators in one process may differ (a test's resync timer).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OperatorSettings"]


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SDXLPOOL_OPERATOR_", extra="forbid", populate_by_name=True)

    resync_seconds: float = Field(300.0, gt=0, description="seconds between safety-net re-syncs of every pool")
    workers: int = Field(8, ge=1, description="handler threads (kopf's executor)")
    retry_seconds: float = Field(5.0, gt=0, description="first delay after an API error that may pass; doubles "
                                 "with each retry, up to retry_max_seconds")
    retry_max_seconds: float = Field(300.0, gt=0, description="longest delay between two retries")
    # The kubeconfig: --kubeconfig, else $SDXLPOOL_OPERATOR_KUBECONFIG, $SDXLPOOL_KUBECONFIG (older
    # name) or $KUBECONFIG; none: in-cluster credentials (a pod's service account), else ~/.kube/config.
    kubeconfig: str | None = Field(None, validation_alias=AliasChoices(
        "SDXLPOOL_OPERATOR_KUBECONFIG", "SDXLPOOL_KUBECONFIG", "KUBECONFIG"))
    namespaces: list[str] = Field(default_factory=list, description="namespaces watched; empty: all (clusterwide)")
    peering: str = Field("sdxlpool", min_length=1, description="kopf peering object shared by the replicas")
    priority: int | None = Field(None, description="peering priority; none: random, so replicas never tie")
    standalone: bool = Field(False, description="no peering: a single replica")
    liveness: str | None = Field(None, description="kopf's liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    autoscale_seconds: float = Field(15.0, gt=0, description="seconds between two autoscaler steps of a pool with "
                                     "spec.autoscaling.enabled (each reads the gateway's demand)")
    demand_url: str | None = Field(None, description="where to read a pool's demand, a template with {namespace} and "
                                   "{name}; none: each ready gateway pod of the pool at podIP:8080/v1/demand")
    demand_timeout_seconds: float = Field(3.0, gt=0, description="how long one read of a gateway's demand may take")

    def retry_delay(self, retry: int) -> float:
        """Seconds before retry number `retry` (0 for the first) of a failure that may pass: exponential backoff."""
        return min(self.retry_seconds * 2 ** min(retry, 30), max(self.retry_seconds, self.retry_max_seconds))
