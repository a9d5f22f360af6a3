"""The worker's job queue: one GPU, one job at a time, first come first served.

Requests await `JobQueue.submit()` on the event loop; a single dedicated thread runs the jobs, so
the CUDA context lives on one thread and the event loop never blocks on inference (metrics, health
and progress keep answering while an image is being made).

The queue is also the source of truth for the busyness metrics the gateway routes on. Everything is
counted in *normalised steps* (one denoising iteration of one 1024x1024 image):

    pending_steps = cost of every waiting job + what is left of the running one

`pending_steps` drops after every denoising step, not only when a job ends, so a scrape in the
middle of a long job sees the truth. `step_seconds` is a moving average of the wall time per
normalised step measured between each job's denoising iterations (one-off work per job, such as
text encoding and VAE decode, is small next to the steps of a real SDXL image and is left out).

Stopping a running job: `interrupt` ends the whole job at its next step (the images made so far
are its answer); `skip` ends only the current batch (A1111's Skip: that batch's image is decoded
from where it got to) and the job goes on with its next `n_iter` batch. Both may name the job
(`task_id`, the client's `force_task_id`), so a caller stops its own job or nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sdxlpool.errors import QueueFull

__all__ = ["Job", "JobQueue", "QueueSnapshot"]

_EMA_WEIGHT = 0.3  # weight of the newest job in the step-time average: adapts within a few jobs


@dataclass(eq=False)
class Job:
    """One request's work. The GPU thread updates the progress fields; the event loop reads them."""

    run: Callable[[Job], Any]  # the work itself, called on the GPU thread with this job
    cost: float  # normalised steps
    iterations: int  # denoising iterations in total, over all batches
    batches: int = 1
    steps: int = 0  # the client's sampling steps per batch (0: one per iteration); /progress counts these
    id: int = field(default_factory=itertools.count(1).__next__)
    task_id: str | None = None  # the client's name for it (A1111 `force_task_id`), shown by /progress
    enqueued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    first_step_at: float | None = None
    last_step_at: float | None = None
    iterations_done: int = 0
    batch_no: int = 0
    latest_latents: Any = None
    interrupt: threading.Event = field(default_factory=threading.Event)
    skip_batch: threading.Event = field(default_factory=threading.Event)  # cleared when the next batch starts
    _woken: threading.Event = field(default_factory=threading.Event, repr=False)  # wakes `wait` for either

    @property
    def label(self) -> str:
        """What /progress calls this job: the client's `force_task_id`, else `task(<n>)` like A1111."""
        return self.task_id or f"task({self.id})"

    def step_in_batch(self) -> tuple[int, int]:
        """(step k, of n) in the current batch, in the client's steps: a second-order sampler runs
        about two denoising iterations per step, and A1111's /progress counts steps."""
        per_batch = max(1, self.iterations // max(1, self.batches))
        done = max(0, self.iterations_done - self.batch_no * per_batch)
        steps = self.steps or per_batch
        return min(steps, round(done * steps / per_batch)), steps

    @property
    def remaining_cost(self) -> float:
        done = min(self.iterations_done, self.iterations)
        return self.cost * (1 - done / self.iterations) if self.iterations else 0.0

    @property
    def fraction_done(self) -> float:
        return min(1.0, self.iterations_done / self.iterations) if self.iterations else 0.0

    def stop(self) -> None:
        """Interrupt the whole job at its next step."""
        self.interrupt.set()
        self._woken.set()

    def skip(self) -> None:
        """End the current batch at its next step; the job goes on with its next batch."""
        self.skip_batch.set()
        self._woken.set()

    # JobControl, called from the GPU thread by the engine's generate():
    def on_batch(self, batch_no: int) -> bool:
        """A batch begins: False when the job was interrupted (stop); a skip only ended the last one."""
        self.batch_no = batch_no
        self.skip_batch.clear()
        if not self.interrupt.is_set():
            self._woken.clear()
        return not self.interrupt.is_set()

    def on_step(self, latents: Any) -> bool:
        now = time.monotonic()
        if self.first_step_at is None:
            self.first_step_at = now
        self.last_step_at = now
        self.iterations_done += 1
        self.latest_latents = latents
        return not (self.interrupt.is_set() or self.skip_batch.is_set())

    def measured_step_seconds(self) -> float | None:
        """Seconds per normalised step, from the spacing of this job's denoising iterations.

        Measured between the first and the last iteration, so one-off work (the first call's kernel
        set-up, text encoding, VAE decode) does not pass for slowness: a short warm-up on a tiny image
        would otherwise claim a speed hundreds of times too slow, and starve the worker of traffic.
        """
        if self.first_step_at is None or self.last_step_at is None or self.iterations_done < 2 or not self.cost:
            return None
        per_iteration = (self.last_step_at - self.first_step_at) / (self.iterations_done - 1)
        return per_iteration / (self.cost / self.iterations)

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False when the job was interrupted or its batch skipped."""
        self._woken.wait(seconds)
        return not (self.interrupt.is_set() or self.skip_batch.is_set())


@dataclass(frozen=True)
class QueueSnapshot:
    queue_depth: int
    inflight: int
    pending_steps: float
    step_seconds: float


class JobQueue:
    def __init__(self, *, max_queued: int, initial_step_seconds: float = 0.0) -> None:
        self.max_queued = max_queued
        self.step_seconds = initial_step_seconds  # 0 until the first job (or warm-up) measures it
        self.running: Job | None = None
        self._waiting: deque[tuple[Job, asyncio.Future[Any]]] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdxl-gpu")
        self._server: asyncio.Task[None] | None = None

    # -- state, read by metrics and /progress -------------------------------------------------
    def snapshot(self) -> QueueSnapshot:
        running = self.running
        pending = sum(job.cost for job, _ in self._waiting)
        if running is not None:
            pending += running.remaining_cost
        return QueueSnapshot(len(self._waiting), int(running is not None), pending, self.step_seconds)

    def retry_after(self) -> int:
        """Seconds until the running job should be done and a queue slot frees up."""
        running = self.running
        left = running.remaining_cost * self.step_seconds if running else 0.0
        return max(1, math.ceil(left))

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._server = asyncio.get_running_loop().create_task(self._serve(), name="sdxl-job-queue")

    async def close(self) -> None:
        if self.running is not None:
            self.running.stop()
        if self._server is not None:
            self._server.cancel()
            await asyncio.gather(self._server, return_exceptions=True)
        for _job, future in self._waiting:
            future.cancel()
        self._waiting.clear()
        self._executor.shutdown(wait=True)

    async def run_now(self, job: Job) -> Any:
        """Run outside the queue (start-up warm-up, before any request can arrive)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._execute, job)

    # -- requests -------------------------------------------------------------------------------
    async def submit(self, job: Job) -> Any:
        """Queue a job and wait for its result.

        Cancelling the wait (the client went away) drops a job not yet started and interrupts a
        running one.
        """
        if len(self._waiting) >= self.max_queued:
            raise QueueFull(
                f"the worker queue is full ({len(self._waiting)} waiting); retry later",
                retry_after=self.retry_after(),
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (job, future)
        self._waiting.append(entry)
        self._wakeup.set()
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if entry in self._waiting:  # not started: nobody wants it any more
                self._waiting.remove(entry)
            elif self.running is job:  # started: stop it at the next step, the GPU is needed elsewhere
                job.stop()
            raise

    def interrupt(self, task_id: str | None = None) -> bool:
        """Stop the running job (only when it is named `task_id`, when given); False: nothing stopped."""
        running = self._running_named(task_id)
        if running is None:
            return False
        running.stop()
        return True

    def skip(self, task_id: str | None = None) -> bool:
        """End the running job's current batch (only when it is named `task_id`, when given)."""
        running = self._running_named(task_id)
        if running is None:
            return False
        running.skip()
        return True

    def _running_named(self, task_id: str | None) -> Job | None:
        running = self.running
        if running is None or (task_id is not None and running.label != task_id):
            return None
        return running

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            job, future = self._waiting.popleft()
            self.running = job
            try:
                result = await loop.run_in_executor(self._executor, self._execute, job)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                if not future.done():
                    future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                if not future.done():
                    future.set_result(result)
            finally:
                self.running = None

    def _execute(self, job: Job) -> Any:
        job.started_at = time.monotonic()
        result = job.run(job)
        sample = None if job.interrupt.is_set() else job.measured_step_seconds()
        if sample is not None and sample > 0:
            self.step_seconds = sample if self.step_seconds <= 0 else (
                _EMA_WEIGHT * sample + (1 - _EMA_WEIGHT) * self.step_seconds
            )
        return result
