"""Configuration section ``deploy``: what ``watt build --container`` and ``watt build
--k8s`` write, and how a stopping instance hands its traffic over.

Part of the schema in :mod:`watt.config` (kept apart only to keep that module
readable); the same rules hold: unknown keys are errors, keys are camelCase.
Nothing here changes how the applications run: the same ``watt.json`` runs on
a laptop, in a container, on Kubernetes and in a serverless function.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

#: A Kubernetes quantity: ``500m``, ``1``, ``512Mi``, ``1Gi``, ``0.5``.
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
#: A DNS-1123 label (the name of every Kubernetes object written).
NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
#: An image reference: [registry[:port]/]path (lowercase)[:tag][@sha256:digest].
IMAGE = (r"^[a-z0-9][a-z0-9._-]*(:[0-9]+)?(/[a-z0-9][a-z0-9._-]*)*"
         r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")


def _doc(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class _Section(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


class DeployResources(_Section):
    """CPU and memory of one instance (Kubernetes requests and limits)."""

    cpu: Annotated[str, _doc("CPU requested (`500m`, `1`, `2`).", pattern=QUANTITY)] = "1"
    memory: Annotated[str, _doc("Memory requested (`512Mi`, `1Gi`).", pattern=QUANTITY)] = "512Mi"
    cpu_limit: Annotated[
        Annotated[str, msgspec.Meta(pattern=QUANTITY)] | None,
        _doc("CPU limit (default: none, so a busy instance is not throttled)."),
    ] = None
    memory_limit: Annotated[
        Annotated[str, msgspec.Meta(pattern=QUANTITY)] | None,
        _doc("Memory limit (default: the memory requested)."),
    ] = None


class DeployConfig(_Section):
    """Deployment settings: the image, Kubernetes replicas and resources, the drain."""

    name: Annotated[
        Annotated[str, msgspec.Meta(pattern=NAME)] | None,
        _doc("Name of the Kubernetes objects (default: the config folder's name)."),
    ] = None
    image: Annotated[
        Annotated[str, msgspec.Meta(pattern=IMAGE)] | None,
        _doc("Container image the Deployment runs (default: `<name>:latest`, as "
             "`docker build -t <name>` tags it)."),
    ] = None
    namespace: Annotated[
        Annotated[str, msgspec.Meta(pattern=NAME)] | None,
        _doc("Kubernetes namespace (default: none, so `kubectl -n` decides)."),
    ] = None
    replicas: Annotated[int, _doc("Instances started (the HPA's minimum).", ge=1)] = 2
    max_replicas: Annotated[int, _doc("Most instances the HPA scales to.", ge=1)] = 10
    target_cpu: Annotated[
        int, _doc("Average CPU utilisation (% of `resources.cpu`) the HPA keeps.",
                  ge=1, le=100)] = msgspec.field(default=70, name="targetCPU")
    min_available: Annotated[
        int, _doc("Instances a voluntary disruption (node drain) must leave running "
                  "(PodDisruptionBudget).", ge=0)] = 1
    drain_delay: Annotated[
        int, _doc("Milliseconds between SIGTERM and closing the listener, during which "
                  "`/ready` answers 503 while requests are still served, so a load balancer "
                  "stops sending new ones first (Kubernetes: the preStop wait).", ge=0)] = 0
    resources: Annotated[DeployResources, _doc("CPU and memory of one instance.")] = \
        DeployResources()
    service_type: Annotated[
        str, _doc("Kubernetes Service type (`ClusterIP`, `NodePort`, `LoadBalancer`).",
                  pattern=r"^(ClusterIP|NodePort|LoadBalancer)$")] = "ClusterIP"
    secret: Annotated[
        Annotated[str, msgspec.Meta(pattern=NAME)] | None,
        _doc("Kubernetes Secret holding the config's secret placeholders (default: "
             "`<name>-secrets`)."),
    ] = None
