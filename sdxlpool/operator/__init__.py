"""The sdxlpool operator: SDXLPool objects reconciled into worker Deployments, Services and a gateway.

Layers, lowest first (each may import only those below it; kopf's ``architecture.rst`` style)::

    sdxlpool.operator.desired    pure: (SDXLPool, Nodes) -> manifests + per-entry placement.
                                 No I/O, no kopf, no Kubernetes client; shared with
                                 ``sdxlpool render``.
    sdxlpool.operator.drift      pure: the merge patch that repairs a drifted child.
    sdxlpool.operator.status     pure: conditions and per-GPU status from what the children say.
    sdxlpool.operator.crd        pure: the CustomResourceDefinition, generated from the spec model.
    sdxlpool._kube               the one module that talks to the API server (shared with the gateway).
    sdxlpool.operator.reconcile  one sync pass of a pool: validate, render, adopt, create or
                                 patch, prune, report; the I/O shell around the pure layers.
    sdxlpool.operator.settings   ``OperatorSettings`` (SDXLPOOL_OPERATOR_*), built once by the CLI.
    sdxlpool.operator.handlers   thin kopf handlers: watches, indexes and timers that all end in
                                 ``reconcile.sync_pool``; ``run_operator(settings)`` registers
                                 them for those settings and runs kopf.

Importing this package imports nothing, so ``sdxlpool render`` and the tests of the pure layers
do not load kopf.
"""
