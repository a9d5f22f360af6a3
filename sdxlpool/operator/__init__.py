"""The sdxlpool operator: SDXLPool objects reconciled into worker Deployments, Services and a gateway.

Layers, lowest first (each may import only those below it; kopf's ``architecture.rst`` style)::

    sdxlpool.operator.desired    pure: (SDXLPool, Nodes) -> manifests + per-entry placement.
                                 No I/O, no kopf, no Kubernetes client; shared with
                                 ``sdxlpool render``.
    sdxlpool.operator.crd        pure: the CustomResourceDefinition, generated from the spec model.
    sdxlpool.operator._kube      the one module that talks to the API server.
    sdxlpool.operator.handlers   thin kopf handlers: load the spec, ask ``desired``, apply via
                                 ``_kube``, report status.

Importing this package imports nothing, so ``sdxlpool render`` and the tests of the pure layers
do not load kopf.
"""
