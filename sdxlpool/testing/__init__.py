"""Test support: what the tests, benchmarks and reliability scripts share (as `kopf.testing` is kopf's).

    emulator   the Kubernetes API emulator (kmock's, with the gaps a kopf operator runs into filled)
               and `EmulatorThread`, which serves it on 127.0.0.1 and writes a kubeconfig for it;
               `InterceptingEmulator`: a hook on the operator's writes (faults, kills mid-request)
    operator   `OperatorThread`: the real kopf operator with sdxlpool's handlers, in a thread;
               `OperatorProcess`: the real CLI as a process (SIGKILL, restart); `TimerRuns`: counts
               the resync timer's runs per pool
    ports      `free_port`: a free TCP port on 127.0.0.1
    stats      `percentile`, `spread`, `poisson_arrivals`, `slope_per_1000`: the figures a load run reports
    processes  `spawn`, `stop`, `wait_ready`, `wait_scraped`: sdxlpool commands as child processes
    pool       `LocalPool` (sim-workers and a gateway as processes) and `send`, which sorts every
               answer into one `Outcome`; samples of the gateway process
    apiserver  `ApiExtensionsServer`: etcd and a real apiextensions-apiserver (Kubernetes' CRD server,
               built by scripts/fetch-apiextensions.sh) on 127.0.0.1, for testing the CRDs

Nothing in the product imports this package (an import-linter contract in pyproject.toml says so),
and it may need the `test` extra: the emulator needs kmock, the pool psutil. Importing this package
itself loads nothing.
"""
