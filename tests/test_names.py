"""Model names and references: one rule for names (a full match), one parser for refs, one resolver.

The resolver and the case check run against a real MLflow store (a local SQLite file).
"""

from __future__ import annotations

import uuid

import pytest

from mlflow_fixtures import use_tracking_uri
from pyml_jupyter.errors import InvalidName, NotFound
from pyml_jupyter.names import ModelRef, parse_ref, validate_name

# ------------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["churn", "Churn_Model", "fraud.v2-a", "x", "a1", "9lives", "x" * 63])
def test_names_mlflow_docker_and_container_names_all_accept_are_valid(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", [
    "churn\n", "churn ", " churn", "x-", "-x", "a__b", "a..b", "a.-b", "a b", "a/b", "a:b", "naïve", "",
    "x" * 64, "churn\x00", "a;b", "$(id)", "../x",
])
def test_names_any_of_them_refuses_are_invalid_and_the_message_says_the_rule(name):
    with pytest.raises(InvalidName) as info:
        validate_name(name)
    assert "is not a valid model name" in info.value.message
    assert "letters and digits" in info.value.message
    assert info.value.status == 400


@pytest.mark.parametrize("name", [None, 3, b"churn"])
def test_a_name_that_is_not_a_string_is_invalid(name):
    with pytest.raises(InvalidName):
        validate_name(name)


# -------------------------------------------------------------------------------------------------- refs


@pytest.mark.parametrize(("ref", "expected"), [
    ("churn", ModelRef("churn")),
    ("churn/3", ModelRef("churn", 3)),
    ("churn@champion", ModelRef("churn", alias="champion")),
    ("models:/churn/3", ModelRef("churn", 3)),
    ("models:/churn@champion", ModelRef("churn", alias="champion")),
    ("churn@latest", ModelRef("churn")),
    ("models:/churn@latest", ModelRef("churn")),
    ("Churn.v2/12", ModelRef("Churn.v2", 12)),
    ("churn@latest_good", ModelRef("churn", alias="latest_good")),
])
def test_every_ref_form_parses_to_a_name_and_a_version_or_an_alias(ref, expected):
    assert parse_ref(ref) == expected


@pytest.mark.parametrize("ref", ["churn", "churn/3", "churn@champion"])
def test_a_parsed_ref_prints_as_it_is_written(ref):
    assert str(parse_ref(ref)) == ref
    assert parse_ref(f"models:/{ref}").uri == f"models:/{ref}"


@pytest.mark.parametrize("ref", [
    "churn/²", "churn/３", "churn/0", "churn/-1", "churn/03", "churn/3.0", "churn/", "churn/1/2", "churn/ 3",
    "churn/" + "9" * 5000, "churn/99999999999", "churn\n", "churn/3\n", "churn/3@latest", "churn@latest/3",
    "churn@", "churn@v3", "churn@cham pion", "churn@champ/3", "@latest", "chu@latest@x", "models:/", "models:/ churn",
    "", "   ", "x-", "a__b", "../../etc/passwd",
])
def test_a_bad_ref_is_an_invalid_name_error_never_a_crash(ref):
    with pytest.raises(InvalidName) as info:
        parse_ref(ref)
    assert info.value.status == 400
    assert len(info.value.message) < 600  # a 5000-digit version is not echoed back whole


@pytest.mark.parametrize("ref", [None, 3, ["churn"]])
def test_a_ref_that_is_not_a_string_is_an_invalid_name_error(ref):
    with pytest.raises(InvalidName):
        parse_ref(ref)


def test_latest_is_only_recognised_as_a_whole_suffix():
    assert parse_ref("latest") == ModelRef("latest")  # a model may be called "latest"
    with pytest.raises(InvalidName):
        parse_ref("churn@latest@latest")


# ------------------------------------------------------------------------------------- against MLflow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("names")
    with use_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}", workdir) as uri:
        yield uri


@pytest.fixture(scope="module")
def three_versions(store):
    """A registered model with three versions (version 2 aliased 'champion'), created with MLflow's API."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    name = f"refs-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    for _ in range(3):
        with mlflow.start_run() as run:
            mlflow.log_text("x", "model/MLmodel")
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", "2")
    return name


@pytest.mark.parametrize(("suffix", "version"), [("", 3), ("@latest", 3), ("/1", 1), ("@champion", 2)])
def test_resolve_ref_turns_latest_and_aliases_into_a_version_number(three_versions, suffix, version):
    from pyml_jupyter.tracking import resolve_ref

    resolved = resolve_ref(three_versions + suffix)
    assert resolved.version == version and isinstance(resolved.version, int)
    assert resolved.name == three_versions
    assert resolved.run_id == resolved.entity.run_id and resolved.run_id


@pytest.mark.parametrize("suffix", ["/9", "@nobody"])
def test_resolving_a_missing_version_or_alias_is_not_found(three_versions, suffix):
    from pyml_jupyter.tracking import resolve_ref

    with pytest.raises(NotFound) as info:
        resolve_ref(three_versions + suffix)
    assert info.value.status == 404


def test_an_unknown_alias_is_one_paragraph_naming_the_aliases_and_how_to_set_it(three_versions):
    from pyml_jupyter.tracking import resolve_ref

    with pytest.raises(NotFound) as info:
        resolve_ref(three_versions + "@nobody")
    message = info.value.message
    assert "\n" not in message and "has no alias 'nobody'" in message and "champion -> v2" in message
    assert f"promote('{three_versions}/VERSION', 'nobody')" in message and "Nothing was changed" in message


def test_resolving_an_unknown_model_is_not_found(store):
    from pyml_jupyter.tracking import resolve_ref

    with pytest.raises(NotFound, match="is not registered"):
        resolve_ref(f"nobody-{uuid.uuid4().hex[:8]}")


def test_a_name_equal_up_to_case_to_a_registered_model_is_refused_naming_it(three_versions):
    from pyml_jupyter.tracking import check_name_available

    with pytest.raises(InvalidName) as info:
        check_name_available(three_versions.upper())
    assert repr(three_versions) in info.value.message
    assert check_name_available(three_versions) == three_versions  # the model itself: a new version


def test_a_name_equal_up_to_surrounding_spaces_to_a_registered_model_is_refused(store):
    from mlflow import MlflowClient

    from pyml_jupyter.tracking import check_name_available

    name = f"spaced-{uuid.uuid4().hex[:8]}"
    MlflowClient().create_registered_model(f" {name} ")  # created outside pyml_jupyter, which would refuse it
    with pytest.raises(InvalidName, match=f"' {name} '"):
        check_name_available(name)


def test_similar_but_different_names_are_available(three_versions):
    from pyml_jupyter.tracking import check_name_available

    other = three_versions.replace("-", "_")
    assert check_name_available(other) == other
