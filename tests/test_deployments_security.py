"""A deployment's container is confined and guarded by default: memory and process limits, a read-only root
with tmpfs where the runtime writes, no capabilities, no new privileges, a non-root user; a Host allow-list
and an optional bearer token that the notebook's Deployment sends (a REAL Docker engine)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from docker_fixtures import built, docker_engine, model_name, pyml_cache, session_package  # noqa: F401
from pyml_jupyter.container_security import DEFAULT_PIDS_LIMIT, ContainerSettings, parse_memory
from pyml_jupyter.deployments import find_deployment, run_deployment, stop_deployment
from pyml_jupyter.errors import PymlError
from pyml_jupyter.serving.loader import load_package

TOKEN = "a-test-token-0123456789"


# ------------------------------------------------------------------------------------------ settings


def test_memory_sizes_are_read_in_binary_units():
    assert parse_memory("512m") == 512 * 1024 ** 2
    assert parse_memory("4g") == parse_memory("4GiB") == parse_memory(4 * 1024 ** 3) == 4 * 1024 ** 3
    assert parse_memory("1.5g") == int(1.5 * 1024 ** 3)


@pytest.mark.parametrize("value", ["lots", "-1g", "12x", "10m", True, ""])
def test_a_bad_memory_size_is_refused_naming_the_setting(value):
    with pytest.raises(PymlError, match="memory"):
        ContainerSettings.build(memory=value)


@pytest.mark.parametrize("value", [0, 8, "100", 2.5, True])
def test_a_bad_pids_limit_is_refused(value):
    with pytest.raises(PymlError, match="pids_limit"):
        ContainerSettings.build(pids_limit=value)


@pytest.mark.parametrize("value", ["bad host", "a/b", "évil.com", "x..y", "-a.com"])
def test_allowed_hosts_must_be_host_names(value):
    with pytest.raises(PymlError, match="allowed_hosts"):
        ContainerSettings.build(allowed_hosts=[value])


def test_allowed_hosts_take_a_list_or_a_comma_separated_string():
    assert ContainerSettings.build(allowed_hosts="A.example.com, .corp,10.0.0.7").allowed_hosts == (
        "a.example.com", ".corp", "10.0.0.7")
    assert ContainerSettings.build(allowed_hosts=["*"]).environment()["PYML_ALLOWED_HOSTS"] == "*"


def test_a_token_is_long_and_printable_or_made_at_random_and_never_shown():
    with pytest.raises(PymlError, match="token"):
        ContainerSettings.build(token="short")
    with pytest.raises(PymlError, match="token"):
        ContainerSettings.build(token="has a space in it, sadly")
    made = ContainerSettings.build(token=True)
    assert len(made.token) >= 40 and made.token != ContainerSettings.build(token=True).token
    assert made.token not in repr(made) and "token=set" in repr(made)
    assert made.environment()["PYML_TOKEN"] == made.token
    assert "PYML_TOKEN" not in ContainerSettings.build().environment()


def test_default_settings_confine_the_container():
    options = ContainerSettings.build().run_options()
    assert options["mem_limit"] == options["memswap_limit"] == 4 * 1024 ** 3
    assert options["pids_limit"] == DEFAULT_PIDS_LIMIT
    assert options["read_only"] is True and options["cap_drop"] == ["ALL"]
    assert options["security_opt"] == ["no-new-privileges:true"]
    assert set(options["tmpfs"]) == {"/tmp", "/home/pyml"}


# ------------------------------------------------------------------------------------------ real containers


@pytest.fixture(scope="module")
def guarded(built, docker_engine):
    _, info, _ = built
    name = model_name("guarded")
    settings = ContainerSettings.build(memory="1g", pids_limit=256, allowed_hosts=["models.example.com"],
                                       token=TOKEN)
    dep = run_deployment(info, name=name, version=1, settings=settings, client=docker_engine)
    yield dep
    stop_deployment(name, "1", client=docker_engine)


def call(url: str, *, token: str | None = None, host: str | None = None, body: dict | None = None) -> int:
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.docker
def test_the_running_container_is_confined(guarded, docker_engine):
    container = docker_engine.containers.get(guarded.container_id)
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] == host["MemorySwap"] == 1024 ** 3
    assert host["PidsLimit"] == 256
    assert set(host["Tmpfs"]) == {"/tmp", "/home/pyml"}
    assert container.attrs["Config"]["User"] == "10001:10001"


@pytest.mark.docker
def test_inside_the_server_is_unprivileged_and_writes_only_to_its_tmpfs(guarded, docker_engine):
    container = docker_engine.containers.get(guarded.container_id)
    code, out = container.exec_run(["id", "-u"])
    assert code == 0 and out.decode().strip() == "10001"
    status = container.exec_run(["cat", "/proc/1/status"])[1].decode()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert container.exec_run(["touch", "/opt/pyml/model/x"])[0] != 0  # read-only root
    assert container.exec_run(["touch", "/x"])[0] != 0
    assert container.exec_run(["touch", "/tmp/x"])[0] == 0
    assert container.exec_run(["touch", "/home/pyml/x"])[0] == 0


@pytest.mark.docker
def test_the_deployment_sends_its_token_and_others_need_it(guarded, built):
    assert guarded.metadata()["name"] == guarded.name  # the client sends the token it read from the engine
    sample = load_package(built[0]).info.read_sample()
    assert len(guarded.predict(sample)) == len(sample)
    url = guarded.url
    assert call(url + "/ping") == 200 and call(url + "/v2/health/ready") == 200  # probes stay open
    assert call(url + "/metadata") == 401
    assert call(url + "/metadata", token="wrong-token-0123456789") == 401
    assert call(url + "/metadata", token=TOKEN) == 200
    assert call(url + "/metadata", token=TOKEN, host="models.example.com") == 200
    assert call(url + "/metadata", token=TOKEN, host="rebinding.example") == 400


@pytest.mark.docker
def test_the_token_is_found_again_from_the_engine_but_never_shown(guarded, docker_engine):
    import docker

    again = find_deployment(guarded.name, "1", client=docker.from_env())
    assert again.token == TOKEN and again.metadata()["name"] == guarded.name
    assert TOKEN not in repr(again) and TOKEN not in again._repr_html_()
    assert TOKEN not in json.dumps(again.to_dict())


@pytest.mark.docker
def test_deploying_again_with_other_settings_replaces_the_container(built, docker_engine):
    _, info, _ = built
    name = model_name("resettle")
    try:
        first = run_deployment(info, name=name, version=1, client=docker_engine)
        assert docker_engine.containers.get(first.container_id).attrs["HostConfig"]["ReadonlyRootfs"] is True
        same = run_deployment(info, name=name, version=1, client=docker_engine)
        assert same.container_id == first.container_id
        other = run_deployment(info, name=name, version=1, client=docker_engine,
                               settings=ContainerSettings.build(memory="2g"))
        assert other.container_id != first.container_id
        assert docker_engine.containers.get(other.container_id).attrs["HostConfig"]["Memory"] == 2 * 1024 ** 3
    finally:
        stop_deployment(name, "1", client=docker_engine)


@pytest.mark.docker
def test_a_model_name_too_long_for_a_host_name_still_deploys_and_answers(built, docker_engine):
    _, info, _ = built
    name = model_name("long")
    name += "x" * (63 - len(name))  # the longest name a model may have: its container name is longer than 63
    try:
        dep = run_deployment(info, name=name, version="1", client=docker_engine)
        assert len(dep.container_name) > 63 and dep.ping()
        assert dep.metadata()["name"] == name
    finally:
        stop_deployment(name, "1", client=docker_engine)


@pytest.mark.docker
def test_the_confined_container_reads_large_bodies_in_its_parse_process(guarded, built):
    # the parse process (a spawned child with its own queues) starts under a read-only root, no capabilities
    # and the pids limit, and a body over 256 KiB goes through it
    sample = load_package(built[0]).info.read_sample()
    big = sample.sample(n=20_000, replace=True, random_state=0).reset_index(drop=True)
    body = json.dumps({"dataframe_split": json.loads(big.to_json(orient="split", index=False))}).encode()
    assert len(body) > 256 * 1024
    request = urllib.request.Request(guarded.url + "/invocations", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert len(json.loads(response.read())["predictions"]) == len(big)
        assert "transfer;dur=" in response.headers["Server-Timing"]  # the round trip to the parse process
