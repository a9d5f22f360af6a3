"""The job queue's batching on its own (the real JobQueue and its GPU thread; the jobs' work is plain
Python, so failures and timings are the test's to choose): the wait-for-partners bound, failure
isolation, interrupts per member, and seconds per step measured per image."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from sdxlpool.worker.jobs import Job, JobQueue


def _job(key: Any, value: Any, *, fail_alone: bool = False, steps: int = 0, release: threading.Event | None = None,
         ) -> Job:
    """A job answering `value`; batched with its key, the batch answers every member's value.
    `fail_alone`: raises when run on its own, and makes any batch it is in raise too."""

    def step_through(job: Job) -> None:
        if release is not None:
            release.wait(10)
        for _ in range(steps):
            time.sleep(0.002)
            if not job.on_step(None):
                return

    def run(job: Job) -> Any:
        step_through(job)
        if fail_alone:
            raise ValueError(f"job {value} is bad")
        return value

    def run_batch(jobs: list[Job]) -> list[Any]:
        if any(j.batch_input["fail_alone"] for j in jobs):
            raise RuntimeError("the batch failed")
        for j in jobs:
            step_through(j)
        return [j.batch_input["value"] for j in jobs]

    job = Job(run=run, cost=float(steps), iterations=steps, batch_key=key, run_batch=run_batch)
    job.batch_input = {"value": value, "fail_alone": fail_alone}
    return job


async def _started(queue: JobQueue, count: int) -> None:
    while len(queue.batch) < count or any(j.started_at is None for j in queue.batch):
        await asyncio.sleep(0.005)


async def test_a_lone_job_waits_for_partners_at_most_batch_wait_and_a_partner_ends_the_wait() -> None:
    queue = JobQueue(max_queued=4, batch_max=2, batch_wait=0.3)
    queue.start()
    try:
        lone = _job("k", 1)
        assert await asyncio.wait_for(queue.submit(lone), 5) == 1
        assert lone.started_at is not None
        assert 0.3 <= lone.started_at - lone.enqueued_at < 0.3 + 0.5  # waited the bound, not much more

        head, partner = _job("k", 2), _job("k", 3)
        first = asyncio.create_task(queue.submit(head))
        while queue.running is not head:
            await asyncio.sleep(0.005)
        second = asyncio.create_task(queue.submit(partner))
        assert await asyncio.wait_for(asyncio.gather(first, second), 5) == [2, 3]
        assert head.sharing == partner.sharing == 2
        assert head.started_at is not None and head.started_at - head.enqueued_at < 0.3  # the partner ended the wait

        unbatchable = _job(None, 4)  # no key: never waits
        assert await queue.submit(unbatchable) == 4
        assert unbatchable.started_at is not None and unbatchable.started_at - unbatchable.enqueued_at < 0.2
    finally:
        await queue.close()


async def test_a_failing_batch_runs_its_members_alone_so_only_the_bad_one_fails() -> None:
    queue = JobQueue(max_queued=4, batch_max=4)
    queue.start()
    release = threading.Event()
    try:
        blocker = asyncio.create_task(queue.submit(_job(None, 0, release=release)))
        await _started(queue, 1)
        members = [_job("k", 1), _job("k", 2, fail_alone=True), _job("k", 3)]
        tasks = [asyncio.create_task(queue.submit(j)) for j in members]
        while queue.snapshot().queue_depth < 3:
            await asyncio.sleep(0.005)
        release.set()
        results = await asyncio.gather(blocker, *tasks, return_exceptions=True)
        assert results[0] == 0 and results[1] == 1 and results[3] == 3
        assert isinstance(results[2], ValueError) and "job 2 is bad" in str(results[2])
        assert all(j.sharing == 1 for j in members)  # run again alone
    finally:
        release.set()
        await queue.close()


async def test_interrupts_name_one_member_or_stop_the_whole_batch() -> None:
    queue = JobQueue(max_queued=4, batch_max=3)
    queue.start()
    release = threading.Event()
    try:
        blocker = asyncio.create_task(queue.submit(_job(None, 0, release=release)))
        await _started(queue, 1)
        members = [_job("k", i, steps=2000) for i in range(3)]
        members[1].task_id = "second"
        tasks = [asyncio.create_task(queue.submit(j)) for j in members]
        while queue.snapshot().queue_depth < 3:
            await asyncio.sleep(0.005)
        release.set()
        await blocker
        await _started(queue, 3)
        assert queue.snapshot().inflight == 3
        assert queue.interrupt("second") is True
        assert [j.interrupt.is_set() for j in members] == [False, True, False]
        assert queue.interrupt() is True  # unnamed: what the GPU is doing, every member
        assert all(j.interrupt.is_set() for j in members)
        await asyncio.gather(*tasks)
        assert queue.interrupt() is False
    finally:
        release.set()
        await queue.close()


def test_seconds_per_step_are_per_image_at_the_batch_size() -> None:
    """Iterations 0.1 s apart for a job of 1 normalised step each: 0.1 s per step alone, 0.05 s per
    image's step when two jobs share every iteration."""
    job = Job(run=lambda j: None, cost=4.0, iterations=4)
    job.first_step_at, job.last_step_at, job.iterations_done = 10.0, 10.3, 4
    assert abs((job.measured_step_seconds() or 0) - 0.1) < 1e-9
    job.sharing = 2
    assert abs((job.measured_step_seconds() or 0) - 0.05) < 1e-9


def test_batch_conditioning_gives_each_row_its_own_members_tensors_at_its_own_step() -> None:
    """BatchConditioning (the batched pipeline call's prompt tensors) against each member alone:
    row i of the negatives and of the positives is member i's, at the step of its own schedule."""
    import torch

    from sdxlpool.worker.conditioning import BatchConditioning, StepConditioning
    from sdxlpool.worker.conditioning.schedule import Side

    def member(seed: int, ends: tuple[int, ...]) -> StepConditioning:
        g = torch.Generator().manual_seed(seed)
        side = lambda n: Side(ends[:n], tuple(torch.randn(6, 4, generator=g) for _ in range(n)),  # noqa: E731
                              tuple(torch.randn(3, generator=g) for _ in range(n)))
        return StepConditioning(side(len(ends)), side(1))

    members = [member(1, (2, 8)), member(2, (8,)), member(3, (4, 8))]  # prompt editing at 2, none, at 4
    batch = BatchConditioning(members)
    like = {"prompt_embeds": torch.zeros(1), "add_text_embeds": torch.zeros(1)}
    for step in (0, 3, 5):
        assert batch.key(step) == tuple(m.key(step) for m in members)
        for guidance in (True, False):
            got = batch.step_tensors(step, 1, guidance, like)
            alone = [m.step_tensors(step, 1, guidance, like) for m in members]
            for name in ("prompt_embeds", "add_text_embeds"):
                rows = len(members)
                if guidance:  # the pipeline's layout: every negative, then every positive
                    assert all(torch.equal(got[name][i], alone[i][name][0]) for i in range(rows))
                    assert all(torch.equal(got[name][rows + i], alone[i][name][1]) for i in range(rows))
                else:
                    assert all(torch.equal(got[name][i], alone[i][name][0]) for i in range(rows))
        kwargs = batch.pipeline_kwargs(step)
        for name, value in kwargs.items():
            assert all(torch.equal(value[i], m.pipeline_kwargs(step)[name][0]) for i, m in enumerate(members))
