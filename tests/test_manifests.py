"""Kubernetes and KServe manifests: typed objects, valid against the Kubernetes OpenAPI schemas and KServe's own
generated API models (not applied to a cluster), with the container's port, health probes, measured memory and
hardening."""

from __future__ import annotations

import uuid

import jsonschema
import kubernetes_validate
import pandas as pd
import pytest
import yaml
from conftest import IN_CI
from kserve_schema import (INSTALL_COMMAND, KSERVE_VERSION, KServeModels, inference_service_schema, installed_version,
                           load_models, undefined_types)

from pyml_jupyter import api, tracking
from pyml_jupyter.errors import PymlError
from pyml_jupyter.manifests import PARSE_PROCESS_MIB, TAG_MEMORY, dns_name, memory_resources
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


@pytest.fixture(scope="session")
def kserve_models() -> KServeModels:
    """KServe's generated API models, from the package scripts/test.sh installs beside (not into) the venv."""
    found = installed_version()
    if found != KSERVE_VERSION:
        reason = (f"KServe {KSERVE_VERSION}'s models are needed to check the InferenceService (found: {found}); "
                  f"install them with: {INSTALL_COMMAND}")
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return load_models()


@pytest.fixture(scope="session")
def isvc_validator(kserve_models) -> jsonschema.Draft202012Validator:
    schema = inference_service_schema(kserve_models)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_inference_service_is_valid_against_kserves_generated_models(kserve, isvc_validator):
    (isvc,) = yaml.safe_load_all(kserve.path.read_text())
    isvc_validator.validate(isvc)
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    assert predictor["containers"][0]["name"] == "kserve-container"  # the name KServe gives the predictor


def test_the_predictors_pod_fields_and_metadata_are_valid_against_the_kubernetes_openapi_schema(kserve):
    from kubernetes.client import V1PodSpec

    (isvc,) = yaml.safe_load_all(kserve.path.read_text())
    pod_keys = set(V1PodSpec.attribute_map.values())  # KServe's predictor inlines a PodSpec
    pod_spec = {k: v for k, v in isvc["spec"]["predictor"].items() if k in pod_keys}
    assert {"containers", "volumes", "securityContext"} <= pod_spec.keys()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": isvc["metadata"], "spec": pod_spec}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_the_schema_is_kserves_predictor_spec_with_kubernetes_models_inside(kserve_models, isvc_validator):
    defs = isvc_validator.schema["$defs"]
    predictor = defs["V1beta1PredictorSpec"]
    assert {"minReplicas", "maxReplicas", "scaleMetric", "containers", "volumes"} <= predictor["properties"].keys()
    assert predictor["properties"]["containers"] == {"type": "array", "items": {"$ref": "#/$defs/V1Container"}}
    assert defs["V1Container"]["required"] == ["name"]  # recorded by the kubernetes client's generated setter
    assert defs["V1beta1InferenceServiceSpec"]["required"] == ["predictor"]  # and by KServe's
    assert all(d["additionalProperties"] is False for d in defs.values())
    assert undefined_types(kserve_models, "V1beta1InferenceServiceSpec") == set()  # every spec type is checked


def test_the_custom_predictor_declares_the_v2_protocol(kserve):
    env = {e["name"]: e.get("value") for e in _container(kserve.objects[0])["env"]}
    assert env["PROTOCOL"] == "v2"  # KServe reads a custom container's protocol from this variable


DELETE = object()


@pytest.mark.parametrize("path, value, where", [
    (("spec", "predicter"), {}, ("spec",)),  # a misspelled field
    (("spec", "predictor", "containers", 0, "readinessProbe", "httpGet", "paht"), "/", (
        "spec", "predictor", "containers", 0, "readinessProbe", "httpGet")),  # ...deep in a Kubernetes model
    (("spec", "predictor", "replicas"), 2, ("spec", "predictor")),  # a Deployment's field, not a predictor's
    (("spec", "predictor", "minReplicas"), "one", ("spec", "predictor", "minReplicas")),  # a wrong type
    (("spec", "predictor", "containers", 0, "ports", 0, "containerPort"), "8080", (
        "spec", "predictor", "containers", 0, "ports", 0, "containerPort")),
    (("metadata", "labels", "app.kubernetes.io/version"), 1, ("metadata", "labels", "app.kubernetes.io/version")),
    (("spec", "predictor", "containers", 0, "name"), DELETE, ("spec", "predictor", "containers", 0)),  # required
    (("kind",), "InferenceServices", ("kind",)),
    (("apiVersion",), "serving.kserve.io/v1alpha1", ("apiVersion",)),
])
def test_a_broken_inference_service_is_refused_where_it_is_broken(kserve, isvc_validator, path, value, where):
    broken = yaml.safe_load(yaml.safe_dump(kserve.objects[0]))
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError) as caught:
        isvc_validator.validate(broken)
    assert tuple(caught.value.absolute_path) == where


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
    assert request_mib * 1024**2 >= 1.5 * peak + PARSE_PROCESS_MIB * 1024**2 and request_mib % 64 == 0


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
