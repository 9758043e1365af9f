"""The notebook's result tables (pyml_jupyter.displays): one row per version or deployment, as text and as HTML.

The magics return them (``%pyml_models``, ``%pyml_deployments``, ``%pyml_stop``); test_magics shows them in a
real shell, these tests pin what they say.
"""

from __future__ import annotations

from pyml_jupyter.deployments import Deployment
from pyml_jupyter.displays import DeploymentTable, ModelTable


class Model:
    """What ModelTable reads of a registered model: its name and its versions' state, newest first."""

    def __init__(self, name: str, versions: list[dict]) -> None:
        self.name, self.versions = name, versions


def version(number: int, *, status: str | None = "passed", image: str | None = None, url: str | None = None,
            aliases: tuple[str, ...] = ()) -> dict:
    return {"version": number, "contract_status": status, "aliases": list(aliases),
            "image": {"tag": image, "id": "sha256:1", "size_bytes": 1} if image else None,
            "deployment": {"url": url, "status": "running", "container_id": "c"} if url else None}


def deployment(name: str, number: str, **extra) -> Deployment:
    return Deployment(name=name, version=number, run_id="r", container_id="0123456789abcdef", url=extra.pop(
        "url", "http://127.0.0.1:8123"), status="running", image=f"pyml/{name}:{number}", **extra)


def test_a_model_table_has_one_row_per_version_with_its_aliases_contract_image_and_deployment():
    table = ModelTable([Model("churn", [version(2, image="pyml/churn:2", url="http://127.0.0.1:9000",
                                                aliases=("champion", "prod")),
                                        version(1, status=None)])])

    assert table.rows() == [["churn", 2, "champion, prod", "passed", "pyml/churn:2", "http://127.0.0.1:9000"],
                            ["churn", 1, "-", "unknown", "-", "-"]]


def test_the_text_form_is_an_aligned_table_under_its_title():
    text = repr(ModelTable([Model("churn", [version(1)]), Model("house_price_model", [version(3)])]))

    title, header, *rows = text.splitlines()
    assert title == "Registered models"
    assert header.split() == ["model", "version", "aliases", "contract", "image", "deployment"]
    assert rows[0].split() == ["churn", "1", "-", "passed", "-", "-"]
    assert header.index("version") == rows[1].index("3")  # columns line up


def test_the_html_form_escapes_what_it_shows():
    html = ModelTable([Model("<b>churn</b>", [version(1, status="<script>")])])._repr_html_()

    assert "<b>churn</b>" not in html and "&lt;b&gt;churn&lt;/b&gt;" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<tr>") == 2  # the header and one version


def test_an_empty_model_table_says_none_is_registered_and_names_no_face():
    table = ModelTable([])

    assert table.rows() == []
    assert "none registered yet" in repr(table) and "none registered yet" in table._repr_html_()
    assert "%pyml" not in repr(table)  # the core's displays leave hints to the faces


def test_a_deployment_table_shows_the_url_grpc_target_and_short_container_id():
    table = DeploymentTable([deployment("churn", "2", grpc_target="127.0.0.1:8124"), deployment("house", "1")])

    assert table.rows() == [["churn", "2", "running", "http://127.0.0.1:8123", "127.0.0.1:8124", "0123456789ab"],
                            ["house", "1", "running", "http://127.0.0.1:8123", "-", "0123456789ab"]]
    assert repr(table).splitlines()[0] == "Deployments"


def test_a_deployment_table_takes_its_title_and_says_none_when_empty():
    assert repr(DeploymentTable([], title="Stopped")) == "Stopped: none\nmodel  version  status  url  grpc_target  container"
    assert "Stopped" in DeploymentTable([deployment("churn", "1")], title="Stopped")._repr_html_()
