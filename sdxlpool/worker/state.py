"""The worker process's state between start-up and shutdown: loading, then serving.

Weights load in the background after the server starts listening, so /healthz answers (the process
is alive) while /readyz says 503 until the model is on the device, as Kubernetes probes expect. A
failure to load is fatal: it is logged and `on_fatal` stops the server with a non-zero exit.
The engine (diffusers unless another is given, see `engine.py`) is known from the start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sdxlpool.worker.engine import DiffusersEngine, Engine
from sdxlpool.worker.service import Placement, WorkerService
from sdxlpool.worker.settings import WorkerSettings

__all__ = ["WorkerState", "placement_for"]

log = logging.getLogger(__name__)


def placement_for(settings: WorkerSettings, device: str) -> Placement:
    """The worker's gpu_model / provider / location / worker labels."""
    gpu = settings.gpu_model
    if not gpu:
        gpu = "cpu"
        if device.startswith("cuda"):
            import torch

            gpu = torch.cuda.get_device_name(torch.device(device))
    try:
        from sdxlpool.api.gpu import normalize_gpu_name

        gpu = normalize_gpu_name(gpu)
    except ValueError:
        gpu = gpu.strip().lower()  # "cpu", or a card the normaliser does not know: kept as given
    return Placement(gpu_model=gpu, provider=settings.provider, location=settings.location,
                     worker=settings.name)


class WorkerState:
    def __init__(
        self, settings: WorkerSettings, on_fatal: Callable[[BaseException], None] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.engine: Engine = engine if engine is not None else DiffusersEngine(settings)
        self.service: WorkerService | None = None
        self.error: BaseException | None = None
        self._on_fatal = on_fatal
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._load(), name="sdxl-load")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.service is not None:
            await self.service.close()

    async def _load(self) -> None:
        settings = self.settings
        try:
            checkpoints = await asyncio.to_thread(self.engine.load)
            device = self.engine.device
            service = WorkerService(settings, checkpoints, placement_for(settings, device), engine=self.engine)
            await service.start()
            self.service = service
            log.info("ready: %s on %s", checkpoints.current.title, device)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - reported, then fatal
            self.error = exc
            log.error("worker failed to start: %s", exc)
            if self._on_fatal is not None:
                self._on_fatal(exc)
