"""Reliability suites: bounded scripts, 127.0.0.1 only; figures in docs/reliability.md."""
