"""The gateway: one A1111-compatible endpoint in front of a pool of SDXL workers.

It discovers workers (a static backends file, or Kubernetes), scrapes their metrics continuously,
routes each request to the worker that will finish it soonest among the GPU models the user allows
(`routing/`: filters, scorers and a picker as small plugins), retries on another worker when one
fails (same seed, same image), and answers with where and how fast the image was made.
"""
