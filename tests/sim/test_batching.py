"""The simulator's batching model (--batch-max, --batch-alpha) through the real worker queue and
metrics: a batch of n takes 1 + alpha x (n - 1) times one image's time, and step_seconds is
measured per image at that batch size."""

from __future__ import annotations

import httpx

from sdxlpool.api import metric_names as mn
from tests.sim.conftest import Background, info_of, metrics, running_sim, wait_for

STEP = 0.02  # seconds per normalised step, alone
JOB = {"prompt": "x", "sampler_name": "Euler", "steps": 20, "width": 1024, "height": 1024}
# Holds the worker busy while the members queue behind it, then is interrupted: 12 s of work, so
# even a heavily loaded machine queues four requests before it would end on its own.
BLOCKER = {**JOB, "width": 2048, "height": 2048, "steps": 150, "force_task_id": "blocker"}


def test_a_batch_of_four_takes_its_modelled_time_and_step_seconds_is_per_image() -> None:
    alpha, n = 0.5, 4
    with running_sim(step_seconds=STEP, batch_max=n, batch_alpha=alpha) as sim:
        url = sim.url
        blocker = Background(url, BLOCKER)
        wait_for(lambda: metrics(url)[mn.WORKER_INFLIGHT] == 1)
        members = []
        for i in range(n):
            members.append(Background(url, {**JOB, "seed": i}))
            wait_for(lambda i=i: metrics(url)[mn.WORKER_QUEUE_DEPTH] == i + 1)
        before = metrics(url)
        assert before[mn.WORKER_BATCH_MAX] == n  # --batch-max, for the gateway's wait estimate
        assert before[mn.WORKER_PENDING_STEPS] > n * JOB["steps"]  # the blocker's rest + four whole jobs
        assert httpx.post(url + "/sdapi/v1/interrupt", params={"id_task": "blocker"}).json() == {"interrupted": True}
        running = wait_for(lambda: (m := metrics(url))[mn.WORKER_INFLIGHT] == n and m)
        assert running[mn.WORKER_QUEUE_DEPTH] == 0 and running[mn.WORKER_PENDING_STEPS] <= n * JOB["steps"]
        answers = [m.result() for m in members]
        assert blocker.result().status_code == 200
        infos = [info_of(a) for a in answers]
        assert [i["sdxlpool"]["batch_images"] for i in infos] == [n] * n
        batch_seconds = JOB["steps"] * STEP * (1 + alpha * (n - 1))  # 1.0 s for four images (0.4 s each alone)
        assert all(batch_seconds * 0.95 <= i["sdxlpool"]["inference_seconds"] <= batch_seconds * 1.5 for i in infos)
        after = metrics(url)
        assert after[mn.WORKER_PENDING_STEPS] == 0
        # step_seconds is an average with weight 0.3 for the newest job (here: the batch's sample).
        sample = (after[mn.WORKER_STEP_SECONDS] - 0.7 * before[mn.WORKER_STEP_SECONDS]) / 0.3
        per_image = STEP * (1 + alpha * (n - 1)) / n  # 0.0125 s: what the gateway's ETA should use
        assert per_image * 0.85 <= sample <= per_image * 1.2, sample
        bucket = f"{mn.WORKER_BATCH_IMAGES}_bucket"
        assert after[f"{bucket}{{le=4.0}}"] - after[f"{bucket}{{le=3.0}}"] == n  # four requests at 4
