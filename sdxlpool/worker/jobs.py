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

Batching (`batch_max` > 1, the worker's --batch-max): a job with a `batch_key` takes up to
batch_max - 1 waiting jobs with the same key (from anywhere behind it: the head is always the oldest
job, so nothing waits behind more than one batch of later ones) and they run as one call of the
head's `run_batch` on the GPU thread. When fewer are waiting, the head waits for partners at most
`batch_wait` seconds (0: never; what queued up behind the last job is batched, nothing more). Each
member keeps its own progress, interrupt and future: `running` is every member, `pending_steps`
counts what is left of each, and `step_seconds` is measured per image at the batch size it ran at
(the batch's seconds per iteration / its members). A batch that raises is run again member by
member, so one bad member fails alone and the others still get their images.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sdxlpool.errors import QueueFull

__all__ = ["Job", "JobQueue", "QueueSnapshot"]

log = logging.getLogger(__name__)

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
    # Batching: jobs with equal keys may run as one `run_batch(jobs)` call (None: always alone). The
    # head's `run_batch` gets every member and answers one result (or exception) per member, in order.
    batch_key: Hashable | None = None
    batch_input: Any = None  # what `run_batch` needs of this member (the service's params and options)
    run_batch: Callable[[list[Job]], list[Any]] | None = None
    sharing: int = 1  # jobs in the model call this job's iterations run in (set by the batch's runner)

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
        return per_iteration / (self.cost / self.iterations) / max(1, self.sharing)  # per image in a batch

    def reset_progress(self) -> None:
        """Forget the steps counted so far (a failed batch's member is run again on its own)."""
        self.iterations_done, self.batch_no, self.sharing = 0, 0, 1
        self.first_step_at = self.last_step_at = self.latest_latents = None

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
    def __init__(self, *, max_queued: int, initial_step_seconds: float = 0.0, batch_max: int = 1,
                 batch_wait: float = 0.0) -> None:
        self.max_queued = max_queued
        self.step_seconds = initial_step_seconds  # 0 until the first job (or warm-up) measures it
        self.batch_max = max(1, batch_max)
        self.batch_wait = max(0.0, batch_wait)  # seconds the head may wait for partners
        self.batch: tuple[Job, ...] = ()  # the running jobs: one, or a batch's members (head first)
        self._waiting: deque[tuple[Job, asyncio.Future[Any]]] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdxl-gpu")
        self._server: asyncio.Task[None] | None = None

    # -- state, read by metrics and /progress -------------------------------------------------
    @property
    def running(self) -> Job | None:
        """The running job (a batch's head, the oldest of its members); None when idle."""
        batch = self.batch
        return batch[0] if batch else None

    def snapshot(self) -> QueueSnapshot:
        batch = self.batch
        pending = sum(job.cost for job, _ in self._waiting) + sum(job.remaining_cost for job in batch)
        return QueueSnapshot(len(self._waiting), len(batch), pending, self.step_seconds)

    def retry_after(self) -> int:
        """Seconds until the running job (every member of a batch) should be done and a slot frees up."""
        left = sum(job.remaining_cost for job in self.batch) * self.step_seconds
        return max(1, math.ceil(left))

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._server = asyncio.get_running_loop().create_task(self._serve(), name="sdxl-job-queue")

    async def close(self) -> None:
        for job in self.batch:
            job.stop()
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
            elif job in self.batch:  # started: stop it at the next step, the GPU is needed elsewhere
                job.stop()
            raise

    def interrupt(self, task_id: str | None = None) -> bool:
        """Stop the running job (only the one named `task_id`, when given; unnamed: every member of a
        running batch, what the GPU is doing); False: nothing stopped."""
        running = self._running_named(task_id)
        for job in running:
            job.stop()
        return bool(running)

    def skip(self, task_id: str | None = None) -> bool:
        """End the running job's current batch (only the job named `task_id`, when given)."""
        running = self._running_named(task_id)
        for job in running:
            job.skip()
        return bool(running)

    def _running_named(self, task_id: str | None) -> list[Job]:
        return [job for job in self.batch if task_id is None or job.label == task_id]

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            members = [self._waiting.popleft()]
            self.batch = (members[0][0],)
            try:
                await self._gather_partners(members)
                jobs = [job for job, _ in members]
                results = await loop.run_in_executor(self._executor, self._execute_batch, jobs)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting requests
                for _, future in members:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                for (_, future), result in zip(members, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
            finally:
                self.batch = ()

    async def _gather_partners(self, members: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        """Waiting jobs with the head's batch key join `members`, up to batch_max; the head waits for
        more at most `batch_wait` seconds (a lone request is delayed by that much at worst)."""
        head = members[0][0]
        if self.batch_max <= 1 or head.batch_key is None or head.run_batch is None:
            return
        deadline = time.monotonic() + self.batch_wait
        while True:
            self._wakeup.clear()  # before looking: a job submitted after the look wakes the wait below
            for entry in [e for e in self._waiting if e[0].batch_key == head.batch_key]:
                if len(members) >= self.batch_max:
                    break
                self._waiting.remove(entry)
                members.append(entry)
            self.batch = tuple(job for job, _ in members)
            left = deadline - time.monotonic()
            if len(members) >= self.batch_max or left <= 0 or head.interrupt.is_set():
                return
            with contextlib.suppress(asyncio.TimeoutError):  # not the builtin one before 3.11
                await asyncio.wait_for(self._wakeup.wait(), left)

    def _execute_batch(self, jobs: list[Job]) -> list[Any]:
        """The GPU thread's work for one dequeued job or batch: one result (or exception) per job."""
        head = jobs[0]
        if len(jobs) == 1 or head.run_batch is None:
            return [self._execute(head)]
        now = time.monotonic()
        for job in jobs:
            job.started_at, job.sharing = now, len(jobs)
        try:
            results = head.run_batch(jobs)
        except Exception:  # one member's problem must not cost the others their images: each alone
            log.exception("a batch of %d jobs failed; running them one by one", len(jobs))
            return [self._execute_alone(job) for job in jobs]
        samples = [s for job in jobs if not job.interrupt.is_set() and (s := job.measured_step_seconds())]
        self._measured(sum(samples) / len(samples) if samples else None)
        return results

    def _execute_alone(self, job: Job) -> Any:
        job.reset_progress()
        try:
            return self._execute(job)
        except Exception as exc:  # noqa: BLE001 - handed to this job's request alone
            return exc

    def _execute(self, job: Job) -> Any:
        job.started_at = time.monotonic()
        result = job.run(job)
        self._measured(None if job.interrupt.is_set() else job.measured_step_seconds())
        return result

    def _measured(self, sample: float | None) -> None:
        if sample is not None and sample > 0:
            self.step_seconds = sample if self.step_seconds <= 0 else (
                _EMA_WEIGHT * sample + (1 - _EMA_WEIGHT) * self.step_seconds
            )
