"""A whole pool on one machine (`sdxlpool up POOL.yaml`): workers and gateway as supervised processes.

    plan.py        pure: SDXLPool spec + options -> the processes, ports, labels and flags
    model.py       which weights: the spec's when on this machine, else the tiny model (made once)
    supervisor.py  run them, restart crashed ones with backoff, report readiness, stop cleanly
    _cli.py        the `up` command: the steps above, in order

`add_parser` registers the command (importing only argparse, like every sub-command).
"""

from __future__ import annotations

from sdxlpool.local._cli import add_parser, run_up

__all__ = ["add_parser", "run_up"]
