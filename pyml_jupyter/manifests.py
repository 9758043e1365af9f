"""Kubernetes manifests for a version's pushed image: a KServe ``InferenceService`` or a plain
``Deployment`` + ``Service`` + ``HorizontalPodAutoscaler``.

Everything is built from the ``kubernetes`` client's typed models (``V1Container``, ``V1Deployment``...; the
``kubernetes`` extra), serialised by its own ``ApiClient``, so field names and types are the API's. The
container is the one ``deploy()`` runs locally: port 8080 (MLflow scoring and the Open Inference Protocol, V2),
readiness on ``/v2/health/ready`` and liveness on ``/v2/health/live``, the image's non-root user, a read-only
root filesystem with memory-backed ``/tmp`` and home, no privilege escalation, every capability dropped. Its
memory request is the model's **measured** peak (a fresh process loading the package and predicting its
stored sample), with headroom; the limit is twice that. The tests validate the manifests against the Kubernetes
OpenAPI schemas and the InferenceService against KServe's generated API models; they are not applied to a cluster
(see docs/kubernetes.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tracking
from .errors import HINT_PUSH, PymlError
from .images.context import CONTAINER_PORT, USER_UID
from .progress import Progress

__all__ = ["FORMATS", "Export", "export", "measure_memory", "memory_resources", "PARSE_PROCESS_MIB", "TAG_MEMORY"]

FORMATS = ("kserve", "kubernetes")
TAG_MEMORY = "pyml.memory_bytes"
"""The MLflow version tag caching the measured peak memory of the model's process."""
_MI = 1024 ** 2
_HEADROOM = 1.5  # request = measured peak x 1.5 (the server, its workers' buffers, request payloads)
PARSE_PROCESS_MIB = 128
"""Added to the request for the worker's parse process (numpy, pandas and the contract: ~100 MiB resident)."""
_WRITABLE = {"tmp": ("/tmp", "256Mi"), "home": ("/home/pyml", "64Mi")}


def _k8s():
    try:
        from kubernetes import client
    except ImportError as exc:
        raise PymlError("Exporting manifests needs the kubernetes client: pip install 'pyml_jupyter[kubernetes]'."
                        ) from exc
    return client


def dns_name(name: str, version: int | None = None) -> str:
    """A DNS-1123 label for Kubernetes objects: ``churn_model`` v3 -> ``churn-model-v3`` (at most 63 chars)."""
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    suffix = f"-v{version}" if version is not None else ""
    return (base[: 63 - len(suffix)].rstrip("-") or "model") + suffix


# ------------------------------------------------------------------------------------------------ memory


def measure_memory(name: str, version: int) -> int:
    """Peak memory (bytes) of a fresh process loading the version's package and predicting its stored sample;
    measured once and kept as the version's ``pyml.memory_bytes`` tag."""
    from .checks.fresh_process import FreshProcess

    mv = tracking.resolve_version(name, version)
    known = (mv.tags or {}).get(TAG_MEMORY, "")
    if known.isdigit():
        return int(known)
    run = FreshProcess(tracking.download_package(name, version), timeout=300.0)
    try:
        run.result()
    except RuntimeError as exc:
        raise PymlError(f"{name}/{version} could not be loaded in a fresh process to measure its memory: {exc}"
                        ) from None
    tracking.set_version_tags(name, version, {TAG_MEMORY: str(run.max_rss_bytes)})
    return run.max_rss_bytes


def memory_resources(peak_bytes: int) -> tuple[str, str]:
    """(request, limit) in MiB for a measured peak: ×1.5 plus the parse process, rounded up to 64 MiB (at least
    128 MiB), limit ×2."""
    request = max(128, math.ceil((peak_bytes * _HEADROOM / _MI + PARSE_PROCESS_MIB) / 64) * 64)
    return f"{request}Mi", f"{2 * request}Mi"


# ------------------------------------------------------------------------------------------------ objects


def _container(c, image: str, name: str, version: int, memory: tuple[str, str]):
    probe = {"initial_delay_seconds": 5, "period_seconds": 10, "timeout_seconds": 5}
    return c.V1Container(
        name="kserve-container", image=image, image_pull_policy="IfNotPresent",
        ports=[c.V1ContainerPort(container_port=CONTAINER_PORT, name="http1", protocol="TCP")],
        env=[c.V1EnvVar(name="PYML_MODEL_NAME", value=name), c.V1EnvVar(name="PYML_MODEL_VERSION", value=str(version)),
             # Inside a cluster the Service, Ingress or KServe's gateway decide who reaches the pod.
             c.V1EnvVar(name="PYML_ALLOWED_HOSTS", value="*")],
        resources=c.V1ResourceRequirements(requests={"cpu": "500m", "memory": memory[0]},
                                           limits={"cpu": "1", "memory": memory[1]}),
        readiness_probe=c.V1Probe(http_get=c.V1HTTPGetAction(path="/v2/health/ready", port=CONTAINER_PORT), **probe),
        liveness_probe=c.V1Probe(http_get=c.V1HTTPGetAction(path="/v2/health/live", port=CONTAINER_PORT),
                                 failure_threshold=3, **probe),
        startup_probe=c.V1Probe(http_get=c.V1HTTPGetAction(path="/v2/health/ready", port=CONTAINER_PORT),
                                period_seconds=5, failure_threshold=60),
        security_context=c.V1SecurityContext(
            run_as_non_root=True, run_as_user=USER_UID, run_as_group=USER_UID, read_only_root_filesystem=True,
            allow_privilege_escalation=False, capabilities=c.V1Capabilities(drop=["ALL"]),
            seccomp_profile=c.V1SeccompProfile(type="RuntimeDefault")),
        volume_mounts=[c.V1VolumeMount(name=key, mount_path=path) for key, (path, _) in _WRITABLE.items()],
    )


def _volumes(c) -> list:
    return [c.V1Volume(name=key, empty_dir=c.V1EmptyDirVolumeSource(medium="Memory", size_limit=size))
            for key, (_, size) in _WRITABLE.items()]


def _pod_security(c):
    return c.V1PodSecurityContext(run_as_non_root=True, run_as_user=USER_UID, fs_group=USER_UID,
                                  seccomp_profile=c.V1SeccompProfile(type="RuntimeDefault"))


def _labels(name: str, version: int) -> dict[str, str]:
    return {"app.kubernetes.io/name": dns_name(name), "app.kubernetes.io/version": str(version),
            "app.kubernetes.io/managed-by": "pyml_jupyter"}


def kserve_objects(image: str, name: str, version: int, memory: tuple[str, str]) -> list[dict[str, Any]]:
    """A KServe ``InferenceService`` (serving.kserve.io/v1beta1) with one custom predictor container, declared
    as speaking the V2 (Open Inference) protocol: KServe reads a custom container's ``PROTOCOL`` variable."""
    c = _k8s()
    api = c.ApiClient()
    meta = c.V1ObjectMeta(name=dns_name(name, version), labels=_labels(name, version))
    container = _container(c, image, name, version, memory)
    container.env.append(c.V1EnvVar(name="PROTOCOL", value="v2"))
    predictor = {"minReplicas": 1, "maxReplicas": 4,
                 "containers": [api.sanitize_for_serialization(container)],
                 "volumes": api.sanitize_for_serialization(_volumes(c)),
                 "securityContext": api.sanitize_for_serialization(_pod_security(c))}
    return [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
             "metadata": api.sanitize_for_serialization(meta), "spec": {"predictor": predictor}}]


def kubernetes_objects(image: str, name: str, version: int, memory: tuple[str, str]) -> list[dict[str, Any]]:
    """``Deployment`` + ``Service`` (port 80 -> 8080) + ``HorizontalPodAutoscaler`` (CPU 70 %, 1-4 replicas)."""
    c = _k8s()
    obj = dns_name(name, version)
    labels = _labels(name, version)
    selector = {"app.kubernetes.io/name": labels["app.kubernetes.io/name"],
                "app.kubernetes.io/version": labels["app.kubernetes.io/version"]}
    deployment = c.V1Deployment(
        api_version="apps/v1", kind="Deployment", metadata=c.V1ObjectMeta(name=obj, labels=labels),
        spec=c.V1DeploymentSpec(
            replicas=1, selector=c.V1LabelSelector(match_labels=selector),
            template=c.V1PodTemplateSpec(
                metadata=c.V1ObjectMeta(labels=labels),
                spec=c.V1PodSpec(containers=[_container(c, image, name, version, memory)], volumes=_volumes(c),
                                 security_context=_pod_security(c), automount_service_account_token=False))))
    service = c.V1Service(
        api_version="v1", kind="Service", metadata=c.V1ObjectMeta(name=obj, labels=labels),
        spec=c.V1ServiceSpec(selector=selector, ports=[c.V1ServicePort(name="http", port=80,
                                                                        target_port=CONTAINER_PORT)]))
    hpa = c.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2", kind="HorizontalPodAutoscaler", metadata=c.V1ObjectMeta(name=obj, labels=labels),
        spec=c.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=c.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment", name=obj),
            min_replicas=1, max_replicas=4,
            metrics=[c.V2MetricSpec(type="Resource", resource=c.V2ResourceMetricSource(
                name="cpu", target=c.V2MetricTarget(type="Utilization", average_utilization=70)))]))
    api = c.ApiClient()
    return [api.sanitize_for_serialization(o) for o in (deployment, service, hpa)]


# ------------------------------------------------------------------------------------------------ export


@dataclass
class Export:
    """Manifests written for a version: the objects (dicts) and the YAML file."""

    name: str
    version: int
    format: str
    image: str
    objects: list[dict[str, Any]]
    path: Path | None = None
    memory: tuple[str, str] = ("", "")
    notes: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        import yaml

        return yaml.safe_dump_all(self.objects, sort_keys=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "format": self.format, "image": self.image,
                "path": str(self.path) if self.path else None, "memory": {"request": self.memory[0],
                                                                          "limit": self.memory[1]},
                "kinds": [o["kind"] for o in self.objects], "notes": self.notes}

    def __repr__(self) -> str:
        kinds = " + ".join(o["kind"] for o in self.objects)
        where = f" -> {self.path}" if self.path else ""
        return (f"<Export {self.name}/{self.version} {kinds} image {self.image}, memory {self.memory[0]} "
                f"(limit {self.memory[1]}){where}>")

    def _repr_html_(self) -> str:
        import html

        notes = "".join(f"<div style='color:#57606a'>{html.escape(n)}</div>" for n in self.notes)
        return (f"<div class='pyml-export'><b>{html.escape(repr(self))}</b>{notes}"
                f"<pre>{html.escape(self.yaml())}</pre></div>")


def _image(name: str, version: int, registry: str | None) -> tuple[str, list[str]]:
    """The image reference a cluster pulls: ``REGISTRY/pyml/NAME:VERSION``, pinned to the pushed digest when
    that is where it was pushed."""
    from .registry import TAG_PUSHED, repository

    pushed = (tracking.resolve_version(name, version).tags or {}).get(TAG_PUSHED, "")
    if registry is None:
        if not pushed:
            raise PymlError(f"{name}/{version} has not been pushed to an image registry, and no registry was given "
                            "for it.", hint=HINT_PUSH)
        return pushed, []
    image = f"{repository(registry, name)}:{version}"
    if pushed.partition("@")[0] == image:
        return pushed, []
    return image, [f"{image} was not pushed from here: push {name}/{version} to {registry} before applying."]


def export(ref: str, format: str = "kserve", *, registry: str | None = None, output: str | Path | None = None,
           progress: Progress | None = None) -> Export:
    """Write the manifests of a version's image (``format`` "kserve" or "kubernetes") to ``output`` (a file or
    folder; default ``NAME-vVERSION.FORMAT.yaml`` in the working directory)."""
    from .api import _resolve

    if format not in FORMATS:
        raise PymlError(f"format must be one of {', '.join(FORMATS)}, not {format!r}.")
    name, version, _ = _resolve(ref)
    progress = progress or Progress(f"export {name}/{version}")
    image, notes = _image(name, version, registry)
    progress.set_stage("measuring memory", 0.2)
    memory = memory_resources(measure_memory(name, version))
    build = kserve_objects if format == "kserve" else kubernetes_objects
    result = Export(name=name, version=version, format=format, image=image,
                    objects=build(image, name, version, memory), memory=memory, notes=notes)
    target = Path(output) if output is not None else Path.cwd()
    if target.is_dir():
        target = target / f"{dns_name(name, version)}.{format}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(result.yaml())
    result.path = target
    progress.set_stage("written", 1.0)
    progress.log(f"wrote {target}")
    return result
