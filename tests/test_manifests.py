"""Kubernetes and KServe manifests: typed objects, valid against the Kubernetes OpenAPI schemas (not applied to a
cluster), with the container's port, health probes, measured memory and hardening."""

from __future__ import annotations

import uuid

import kubernetes_validate
import pandas as pd
import pytest
import yaml

from pyml_jupyter import api, tracking
from pyml_jupyter.errors import PymlError
from pyml_jupyter.manifests import TAG_MEMORY, dns_name, memory_resources
from pyml_jupyter.serving.contract import DataFrameModel

K8S_VERSION = "1.30.0"


class Tripler(DataFrameModel):
    def predict(self, df):
        return pd.DataFrame({"y": df["x"] * 3.0}, index=df.index)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifests")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("PYML_CACHE_DIR", str(root / "cache"))
        name = f"Tripler_{uuid.uuid4().hex[:6]}"
        api.register(Tripler, name, pd.DataFrame({"x": [1.0, 2.0]}))
        yield {"root": root, "name": name}


@pytest.fixture(scope="module")
def kserve(store):
    return api.export(f"{store['name']}/1", "kserve", registry="registry.example.com:5000/team",
                      output=store["root"])


@pytest.fixture(scope="module")
def plain(store):
    return api.export(f"{store['name']}/1", "kubernetes", registry="registry.example.com:5000/team",
                      output=store["root"] / "k8s" / "model.yaml")


def _container(obj: dict) -> dict:
    spec = obj["spec"]["predictor"] if obj["kind"] == "InferenceService" else obj["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return container


def test_the_kubernetes_objects_are_valid_against_the_openapi_schemas(plain):
    assert [o["kind"] for o in plain.objects] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for obj in yaml.safe_load_all(plain.path.read_text()):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# The InferenceService's own fields, as KServe's generated models declare them (kserve 0.21: V1beta1InferenceService,
# V1beta1InferenceServiceSpec, and the V1beta1PredictorSpec fields that are not a PodSpec's). The `kserve` package
# cannot be installed beside this project (it pins protobuf 6, psutil 5.9 and an older grpcio-tools), so its
# models are not imported: this schema covers the envelope, and the predictor's PodSpec part is checked against
# the Kubernetes OpenAPI schema itself.
_INT, _STR, _MAP = {"type": "integer"}, {"type": "string"}, {"type": "object", "additionalProperties": {"type": "string"}}
PREDICTOR_EXTENSION = {"minReplicas": {**_INT, "minimum": 0}, "maxReplicas": {**_INT, "minimum": 0},
                       "scaleTarget": _INT, "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
                       "scaleMetricType": _STR, "containerConcurrency": _INT, "timeout": _INT,
                       "canaryTrafficPercent": _INT, "labels": _MAP, "annotations": _MAP, "logger": {"type": "object"},
                       "batcher": {"type": "object"}, "deploymentStrategy": {"type": "object"},
                       "autoScaling": {"type": "object"}, "workerSpec": {"type": "object"},
                       "storageUris": {"type": "array"}, "model": {"type": "object"}}
INFERENCE_SERVICE = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {"apiVersion": {"const": "serving.kserve.io/v1beta1"}, "kind": {"const": "InferenceService"},
                   "metadata": {"type": "object", "required": ["name"]},
                   "spec": {"type": "object", "required": ["predictor"], "additionalProperties": False,
                            "properties": {k: {"type": "object"} for k in ("predictor", "explainer", "transformer",
                                                                           "tracing")} | {"canary": {"type": "array"}}}},
}


def validate_inference_service(isvc: dict) -> None:
    """The envelope against KServe's fields, metadata as an ObjectMeta, the predictor's rest as a PodSpec."""
    import jsonschema

    jsonschema.validate(isvc, INFERENCE_SERVICE)
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": isvc["metadata"]},
                                 K8S_VERSION, strict=True)
    predictor = dict(isvc["spec"]["predictor"])
    extension = {k: predictor.pop(k) for k in list(predictor) if k in PREDICTOR_EXTENSION}
    jsonschema.validate(extension, {"type": "object", "properties": PREDICTOR_EXTENSION})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": predictor}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_the_inference_service_is_valid_envelope_metadata_and_predictor_pod_spec(kserve):
    (isvc,) = yaml.safe_load_all(kserve.path.read_text())
    validate_inference_service(isvc)
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    assert predictor["containers"][0]["name"] == "kserve-container"  # the name KServe gives the predictor


def test_the_custom_predictor_declares_the_v2_protocol(kserve):
    env = {e["name"]: e.get("value") for e in _container(kserve.objects[0])["env"]}
    assert env["PROTOCOL"] == "v2"  # KServe reads a custom container's protocol from this variable


@pytest.mark.parametrize("path, value", [(("spec", "predictor", "minReplicas"), "one"),
                                         (("spec", "predictor", "replicas"), 2),
                                         (("spec", "predicter"), {}),
                                         (("metadata", "name"), 7),
                                         (("kind",), "InferenceServices")])
def test_a_broken_inference_service_is_caught_by_the_check(kserve, path, value):
    import jsonschema

    broken = yaml.safe_load(yaml.safe_dump(kserve.objects[0]))
    where = broken
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        validate_inference_service(broken)


def test_an_invalid_object_is_caught_by_the_schema_check(plain):
    broken = yaml.safe_load(yaml.safe_dump(plain.objects[0]))
    _container(broken)["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("fixture", ["kserve", "plain"])
def test_the_container_serves_port_8080_with_health_probes_and_the_registry_image(fixture, request, store):
    export = request.getfixturevalue(fixture)
    container = _container(export.objects[0])
    assert container["image"] == f"registry.example.com:5000/team/pyml/{store['name'].lower()}:1"
    assert container["ports"] == [{"containerPort": 8080, "name": "http1", "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}


@pytest.mark.parametrize("fixture", ["kserve", "plain"])
def test_the_container_is_hardened(fixture, request):
    export = request.getfixturevalue(fixture)
    context = _container(export.objects[0])["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"] for m in _container(export.objects[0])["volumeMounts"]}
    assert mounts == {"/tmp", "/home/pyml"}  # the only writable places


def test_memory_comes_from_the_measured_peak_of_the_model_process(kserve, store):
    peak = int(tracking.resolve_version(store["name"], 1).tags[TAG_MEMORY])
    assert 20 * 1024**2 < peak < 2 * 1024**3  # a real interpreter with pandas loaded
    resources = _container(kserve.objects[0])["resources"]
    assert (resources["requests"]["memory"], resources["limits"]["memory"]) == memory_resources(peak)
    request_mib = int(resources["requests"]["memory"].removesuffix("Mi"))
    assert request_mib * 1024**2 >= 1.5 * peak and request_mib % 64 == 0


def test_the_service_and_autoscaler_point_at_the_deployment(plain, store):
    deployment, service, hpa = plain.objects
    name = dns_name(store["name"], 1)
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == hpa["metadata"]["name"] == name
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}


def test_names_become_dns_labels():
    assert dns_name("Churn_Model.x", 12) == "churn-model-x-v12"
    assert len(dns_name("a" * 63, 123)) <= 63


def test_without_a_registry_an_unpushed_version_is_refused(store):
    with pytest.raises(PymlError, match="has not been pushed to an image registry"):
        api.export(f"{store['name']}/1", "kserve")


def test_an_unknown_format_is_refused(store):
    with pytest.raises(PymlError, match="format must be one of kserve, kubernetes"):
        api.export(f"{store['name']}/1", "helm", registry="r.example.com")
