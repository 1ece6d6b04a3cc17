"""``watt build --k8s``: Kubernetes manifests for the image ``watt build --container``
makes.

Five files in ``--out`` (default ``dist/k8s``), one object each, applied with
``kubectl apply -f dist/k8s``: a Deployment, a Service, a ConfigMap (the config
as deployed instances run it, and the non-secret variables its placeholders
name), a HorizontalPodAutoscaler and a PodDisruptionBudget.  Secrets are never
written: each secret placeholder becomes an environment variable read from a
Secret the cluster already has (``deploy.secret``, default ``<name>-secrets``).

The drain, in order: Kubernetes runs the preStop wait (``deploy.drainDelay``,
at least 5 s) while it removes the pod from the Service's endpoints, then sends
SIGTERM; Watt closes its listener, finishes the requests in flight (up to
``gracefulShutdown.runtime``) and exits.  ``terminationGracePeriodSeconds``
covers both, plus a margin, so the kubelet never SIGKILLs a draining pod.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from .deploy import (
    DEPLOY_CONFIG,
    USER_ID,
    BuildInput,
    config_in_image,
    deploy_config,
    image_name,
    object_name,
)
from .errors import WattError

#: The preStop wait when ``deploy.drainDelay`` is shorter: endpoint removal
#: reaches kube-proxy and ingress controllers in a few seconds.
MIN_PRESTOP = 5
#: Seconds of terminationGracePeriodSeconds beyond the preStop wait and the drain.
MARGIN = 5
FILES = ("configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml")


def manifests(build: BuildInput) -> dict[str, dict]:
    """File name -> Kubernetes object (pure: tested without a cluster)."""
    loaded = build.loaded
    deploy = loaded.config.deploy
    name = object_name(loaded)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "watt"}
    selector = {"app.kubernetes.io/name": name}

    def meta(suffix: str = "") -> dict:
        out = {"name": name + suffix, "labels": labels}
        if deploy.namespace:
            out["namespace"] = deploy.namespace
        return out

    config = deploy_config(loaded)
    # The preStop hook waits here instead: the runtime must not wait a second time.
    config["deploy"] = {**config.get("deploy", {}), "drainDelay": 0}
    config_text = json.dumps(config, indent=2) + "\n"
    prestop = max(MIN_PRESTOP, math.ceil(deploy.drain_delay / 1000))
    grace = prestop + math.ceil(loaded.graceful_shutdown.runtime / 1000) + MARGIN
    env = [{"name": var, "valueFrom": {"configMapKeyRef": {"name": f"{name}-config",
                                                          "key": var}}}
           for var in build.plain]
    env += [{"name": var, "valueFrom": {"secretKeyRef": {
        "name": deploy.secret or f"{name}-secrets", "key": var}}} for var in build.secrets]
    port = loaded.server.port or 3042
    probes_port = loaded.metrics.port
    resources = deploy.resources
    container = {
        "name": "watt",
        "image": image_name(loaded),
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"},
                  {"name": "probes", "containerPort": probes_port, "protocol": "TCP"}],
        "env": env,
        "startupProbe": _probe("/ready", period=2, failures=30),
        "readinessProbe": _probe("/ready", period=5, failures=2),
        "livenessProbe": _probe("/live", period=10, failures=3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(prestop)]}}},
        "resources": {
            "requests": {"cpu": resources.cpu, "memory": resources.memory},
            "limits": {"memory": resources.memory_limit or resources.memory,
                       **({"cpu": resources.cpu_limit} if resources.cpu_limit else {})}},
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": config_in_image(loaded),
                          "subPath": DEPLOY_CONFIG, "readOnly": True}],
    }
    if not env:
        del container["env"]
    checksum = hashlib.sha256(config_text.encode()
                              + json.dumps(build.plain).encode()).hexdigest()
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(),
        "spec": {
            "replicas": deploy.replicas,
            "selector": {"matchLabels": selector},
            # A new pod is ready before an old one drains: the rollout never lowers capacity.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                # A changed config rolls the pods (a subPath mount is never refreshed).
                "metadata": {"labels": labels, "annotations": {"watt/config-sha256": checksum}},
                "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": USER_ID,
                                        "runAsGroup": USER_ID, "fsGroup": USER_ID},
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {
                        "name": f"{name}-config",
                        "items": [{"key": DEPLOY_CONFIG, "path": DEPLOY_CONFIG}]}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta(),
        "spec": {"type": deploy.service_type, "selector": selector,
                 "ports": [{"name": "http", "port": 80, "targetPort": "http",
                            "protocol": "TCP"},
                           {"name": "probes", "port": probes_port, "targetPort": "probes",
                            "protocol": "TCP"}]},
    }
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("-config"),
                 "data": {DEPLOY_CONFIG: config_text, **build.plain}}
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(),
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": name},
                 "minReplicas": deploy.replicas,
                 "maxReplicas": max(deploy.max_replicas, deploy.replicas),
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization",
                                               "averageUtilization": deploy.target_cpu}}}]},
    }
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(),
           "spec": {"minAvailable": min(deploy.min_available, deploy.replicas),
                    "selector": {"matchLabels": selector}}}
    return dict(zip(FILES, (configmap, deployment, service, hpa, pdb), strict=True))


def _probe(path: str, *, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "probes"}, "periodSeconds": period,
            "timeoutSeconds": 3, "failureThreshold": failures}


def write_k8s(build: BuildInput, out: str | os.PathLike) -> list[str]:
    """Write the manifests as YAML files in ``out``; return their names."""
    try:
        import yaml  # the `deploy` extra: only `watt build --k8s` needs it
    except ImportError:
        raise WattError("writing Kubernetes manifests needs PyYAML: pip install "
                        "'watt[deploy]'", code="WATT_BUILD_MISSING_DEPENDENCY") from None

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data) -> bool:  # shared label dicts: written out, no &id001
            return True

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        # The config file in the ConfigMap reads as a block, as it was written.
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, text)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, obj in manifests(build).items():
        (out / name).write_text(
            "# Written by `watt build --k8s`; apply with `kubectl apply -f <this folder>`\n"
            + yaml.dump(obj, Dumper=Dumper, sort_keys=False, default_flow_style=False))
    return list(FILES)
