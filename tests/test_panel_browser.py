"""The sidebar in a real JupyterLab, driven in headless Chromium: two versions registered from a notebook in
the lab's own kernel, Build v2 with its live log, Test on every target (one parity table), the container's log,
Promote to champion, Push to an unreachable registry (an error, nothing changed), then to a real registry (both
set in the settings editor), Stop; light and dark screenshots.

JupyterLab runs in a subprocess on loopback with a token, against a temporary sqlite MLflow store: its kernels
inherit that environment, so what a notebook registers is what the panel lists. The built extension
(``pyml_jupyter/labextension``, from ``cd labextension && npm ci && npm run build:prod``) is put first on
``JUPYTER_PATH``, so the test sees the source tree's build even when another copy is installed. Screenshots land
in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from pyml_jupyter import api, tracking
from pyml_jupyter.registry import TAG_PUSHED

from conftest import IN_CI
from processes import free_port
from registry_fixtures import serve_registry

REPO = Path(__file__).resolve().parent.parent
BUILT_EXTENSION = REPO / "pyml_jupyter" / "labextension"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("PYML_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.docker]


# The notebook a data scientist types into the lab: two versions of one model, registered by the magic,
# and the first made champion.
NOTEBOOK_CELLS = [
    "%load_ext pyml_jupyter\nimport pandas as pd\nfrom pyml_jupyter import DataFrameModel",
    """class AffinePanelModel(DataFrameModel):
    # y = 3x - 2, and a label: a tiny model to deploy from the panel

    def predict(self, df):
        y = df["x"] * 3.0 - 2.0
        return pd.DataFrame({"y": y, "positive": (y > 0).astype("int64")}, index=df.index)
""",
    """class AffinePanelModelV2(DataFrameModel):
    # version 2: y = 3x - 1.5 / 7 (floats that JSON, gRPC and Arrow must all carry exactly), and a label

    def predict(self, df):
        y = df["x"] * 3.0 - 1.5 / 7.0
        return pd.DataFrame({"y": y, "positive": (y > 0).astype("int64")}, index=df.index)
""",
    'sample = pd.DataFrame({"x": [0.5, 1.0, 2.25, -1.5]})\n'
    "%pyml_register AffinePanelModel --name {name} --sample sample",
    "%pyml_register AffinePanelModelV2 --name {name} --sample sample",
    # v1 is the champion to begin with (its parity gate on Spark only: v2 stays the first image this test builds)
    "%pyml_promote {name}/1 --targets batch",
    'print("pyml-walk:", "registered", "{name}")',
]
SAMPLE_ROWS = 4


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what}, and CI=true: the browser test must run in CI")
    pytest.skip(what)


@pytest.fixture(scope="module")
def prerequisites():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    if not (BUILT_EXTENSION / "package.json").is_file():
        _missing("the lab extension is not built (cd labextension && npm ci && npm run build:prod)")
    built = max(p.stat().st_mtime for p in BUILT_EXTENSION.rglob("*") if p.is_file())
    sources = [p for d in ("src", "style") for p in (REPO / "labextension" / d).rglob("*") if p.is_file()]
    newer = [str(p.relative_to(REPO)) for p in sources if p.stat().st_mtime > built and "__tests__" not in p.parts]
    assert not newer, f"the lab extension build is older than {newer[:3]}: cd labextension && npm run build"
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means no usable engine
        _missing("Docker engine not reachable")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is not installed")


def _wait_for_server(proc: subprocess.Popen, url: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer within {timeout}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def lab(prerequisites, tmp_path_factory):
    """JupyterLab serving the panel against a fresh store, which its kernels inherit (nothing registered yet)."""
    tmp = tmp_path_factory.mktemp("lab")
    env_vars = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "PYML_CACHE_DIR": str(tmp / "cache"),
        "PYML_MLFLOW_UI": "http://127.0.0.1:5000",  # nothing listens: only the links are checked
    }
    name = f"panel_affine_{uuid.uuid4().hex[:6]}"
    (tmp / "registry").mkdir()
    with serve_registry(tmp / "registry") as registry, pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # MLflow's default ./mlruns artifacts go here, for the server, its kernels and this process
        for key, value in env_vars.items():
            mp.setenv(key, value)

        # isolated Jupyter dirs: the built extension first on JUPYTER_PATH, the server extension enabled,
        # the news prompt off (it would cover the panel in screenshots)
        jpath = tmp / "jupyter_path"
        (jpath / "labextensions").mkdir(parents=True)
        (jpath / "labextensions" / "pyml_jupyter").symlink_to(BUILT_EXTENSION, target_is_directory=True)
        config_dir = tmp / "jupyter_config"
        (config_dir / "labconfig").mkdir(parents=True)
        (config_dir / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": {"pyml_jupyter": True}}})
        )
        (config_dir / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        # the settings editor's values: where Push sends images, a quick refresh
        settings = tmp / "lab_settings" / "pyml_jupyter"
        settings.mkdir(parents=True)
        (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"registry": registry,
                                                                         "refreshInterval": 2000}))
        root = tmp  # the notebook's kernel starts in the same directory as the server
        token = uuid.uuid4().hex
        port = free_port()
        env = {
            **os.environ,
            **env_vars,
            "JUPYTER_PATH": str(jpath),
            "JUPYTER_CONFIG_DIR": str(config_dir),
            "JUPYTER_DATA_DIR": str(tmp / "jupyter_data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter_runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp / "lab_settings"),
        }
        log = tmp / "jupyterlab.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "jupyterlab", "--no-browser",
                    "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                    f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
                    "--LabApp.expose_app_in_browser=True",
                ],
                cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for_server(proc, f"{base}/api/status?token={token}", log)
            yield {"url": f"{base}/lab?token={token}", "name": name, "ref": f"{name}/2", "log": log,
                   "registry": registry}
        finally:
            try:
                api.stop(name)
            except Exception:  # noqa: BLE001 - nothing running, or already stopped by the test
                pass
            try:
                from pyml_jupyter.images.builder import remove_image

                for version in (1, 2):  # each run registers a new name: don't pile images up
                    try:
                        remove_image(name, version, force=True)
                    except Exception:  # noqa: BLE001 - that version was not built
                        pass
                import docker

                client = docker.from_env()
                for image in client.images.list(filters={"label": f"pyml.model={name}"}):  # the pushed tags too
                    client.images.remove(image.id, force=True)
            except Exception:  # noqa: BLE001 - nothing was built
                pass
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


@pytest.fixture
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            page.set_default_timeout(60_000)
            trail: list[str] = []  # what to print when the test fails: console errors, /pyml/ answers
            page.on("console", lambda m: trail.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
            page.on(
                "response",
                lambda r: trail.append(f"{r.request.method} {r.url.split('?')[0]} -> {r.status}")
                if "/pyml/" in r.url and "/pyml/jobs/" not in r.url
                else None,
            )
            try:
                yield page
            except BaseException:
                raise
            finally:
                if trail:
                    print("browser trail:\n  " + "\n  ".join(trail[-60:]))
                page.screenshot(path=str(ARTIFACTS / "page-last.png"))
        finally:
            browser.close()


def _widen_sidebar(page, panel, width: int) -> None:
    """Drag the splitter between the left sidebar and the main area."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box, grip = panel.bounding_box(), handle.bounding_box()
    y = grip["y"] + grip["height"] / 2
    page.mouse.move(grip["x"] + grip["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + width, y, steps=8)
    page.mouse.up()
    page.wait_for_function(f"document.getElementById('pyml-panel').offsetWidth > {width - 60}")


def _no_error(version) -> None:
    errors = version.locator(".pyml-error")
    assert errors.count() == 0, errors.all_inner_texts()


def _shot(panel, name: str) -> None:
    panel.screenshot(path=str(ARTIFACTS / name))


def _set_registry(page, registry: str) -> None:
    """Type ``registry`` into the settings editor's "Image registry" field, as a user would; the panel takes it
    up without a reload (its Push buttons name it)."""
    page.evaluate("window.jupyterapp.commands.execute('settingeditor:open', {query: 'pyml'})")
    page.locator('[id="jp-SettingsEditor-pyml_jupyter:plugin_registry"]').fill(registry)
    page.locator(f'#pyml-panel .pyml-push[title$=" to {registry}"]').first.wait_for(timeout=30_000)


def _register_in_a_notebook(page, name: str) -> None:
    """Open a new notebook in the lab, type the cells of ``NOTEBOOK_CELLS`` and run each (Shift+Enter) in its
    kernel; wait until the last one has printed (or a cell has failed: then say what its outputs show)."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:create-new', {kernelName: 'python3'})")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    notebook.wait_for(timeout=120_000)
    for i, source in enumerate(NOTEBOOK_CELLS):
        editor = notebook.locator(".jp-Cell").nth(i).locator(".cm-content")
        editor.wait_for()
        editor.click()
        page.keyboard.insert_text(source.replace("{name}", name))
        page.keyboard.press("Shift+Enter")  # run it; the next (new) cell becomes the active one
    done = page.wait_for_function(
        """() => {
            const outputs = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output');
            const text = [...outputs].map(o => o.innerText).join('\\n');
            if (text.includes('pyml-walk: registered')) return 'ok';
            if (text.includes('Traceback (most recent call last)') || text.includes('UsageError')) return text;
            return false;
        }""",
        timeout=900_000,
    ).json_value()
    assert done == "ok", f"registering in the notebook failed; its outputs show:\n{done[-4000:]}"
    notebook.locator(".jp-Cell").nth(len(NOTEBOOK_CELLS) - 1).scroll_into_view_if_needed()


def test_build_test_every_target_and_stop_from_the_sidebar(lab, page):
    page.goto(lab["url"])
    page.wait_for_selector("#jp-main-dock-panel", state="attached", timeout=120_000)

    # open the sidebar through its icon: nothing registered yet
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="pyml-panel"]').click()
    panel = page.locator("#pyml-panel")
    panel.wait_for(state="visible")
    panel.locator(".pyml-empty").wait_for(timeout=120_000)

    # register two versions from a notebook in the lab's kernel, and promote v1: the panel lists both without a
    # manual refresh (not only the latest), v1 as the champion
    _register_in_a_notebook(page, lab["name"])
    model = panel.locator(f'.pyml-model[data-name="{lab["name"]}"]')
    model.locator(f'.pyml-version[data-ref="{lab["name"]}/1"]').wait_for(timeout=120_000)
    model.locator(f'.pyml-version[data-ref="{lab["ref"]}"]').wait_for(timeout=120_000)
    model.locator(f'.pyml-version[data-ref="{lab["name"]}/1"] .pyml-alias').wait_for(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "lab-0-registered-in-a-notebook.png"))
    assert model.locator(".pyml-version").count() == 2
    version = model.locator(f'.pyml-version[data-ref="{lab["ref"]}"]')
    assert version.locator(".pyml-contract-passed").count() == 1
    assert version.locator(".pyml-status-not-deployed").count() == 1
    assert panel.locator(".pyml-mlflow-link").get_attribute("href") == "http://127.0.0.1:5000/"
    assert model.locator(".pyml-mlflow-model-link").get_attribute("href").endswith(f"#/models/{lab['name']}")
    _shot(panel, "panel-1-models.png")

    # Build v2: a job with a progress bar, then the image badge
    version.locator(".pyml-build").click()
    version.locator('.pyml-job[data-kind="build"]').wait_for()
    _shot(panel, "panel-2-building.png")
    version.locator(".pyml-image-built, .pyml-job-failed, .pyml-error").first.wait_for(timeout=900_000)
    _no_error(version)
    version.locator(".pyml-image-built").wait_for()
    # the build has ended, and its log stays under the version, folded, until the next build
    built = version.locator('.pyml-job-succeeded[data-kind="build"]')
    built.wait_for(timeout=60_000)
    assert built.locator(".pyml-job-stage").inner_text() == "Build: done"
    build_log = built.locator(".pyml-log")
    assert build_log.get_attribute("open") is None
    build_log.locator("summary").click()
    assert "Built pyml/" in build_log.locator("pre").inner_text()
    _shot(panel, "panel-2-built-log.png")
    build_log.locator("summary").click()  # folded again: the row stays short

    # Test on every target (in a wider sidebar, as a user would drag it to read the table): the container is
    # deployed on the way, and the table has a column group per target with every row matching
    _widen_sidebar(page, panel, 900)
    version.locator(".pyml-test").click()
    version.locator(".pyml-parity-row, .pyml-error").first.wait_for(timeout=900_000)
    _no_error(version)
    rows = version.locator(".pyml-parity-row")
    assert rows.count() == SAMPLE_ROWS
    assert version.locator(".pyml-parity-row.pyml-row-mismatch").count() == 0
    assert version.locator(".pyml-parity-summary").inner_text().startswith("✓")
    groups = version.locator(".pyml-parity-group").all_inner_texts()
    assert groups == ["input", "notebook", "fresh process", "container (HTTP)", "container (gRPC)", "Spark"]
    statuses = {t.get_attribute("data-key"): t.locator(".pyml-target-status").inner_text()
                for t in version.locator(".pyml-target").all()}
    assert statuses == {"fresh_process": "match", "http": "match", "grpc": "match", "spark": "match"}, statuses
    version.locator(".pyml-status-running").wait_for(timeout=60_000)  # visible without a manual refresh

    # the container's recent log lines
    version.locator(".pyml-logs-toggle").click()
    version.locator(".pyml-container-log").wait_for()
    page.wait_for_function("document.querySelector('.pyml-container-log').textContent.length > 0")
    _shot(panel, "panel-3-tested.png")

    # Promote v2 to champion: each gate is shown passed, the alias shows on v2 without a manual refresh
    version.locator(".pyml-promote").click()
    version.locator(".pyml-promoted, .pyml-job-failed, .pyml-error").first.wait_for(timeout=600_000)
    _no_error(version)
    assert "@champion → v2 (was v1)" in version.locator(".pyml-promoted").inner_text()
    gates = version.locator(".pyml-promoted .pyml-gate")
    assert [g.get_attribute("data-gate") for g in gates.all()] == ["contract", "parity"]
    assert version.locator(".pyml-promoted .pyml-gate-passed").count() == 2
    # and how v2's predictions of the stored sample differ from v1's: y moves by 2 - 1.5/7, one label of 4 flips
    comparison = version.locator(".pyml-promoted .pyml-comparison")
    assert f"{lab['ref']} vs {lab['name']}/1 on 4 rows" in comparison.inner_text()
    cells = {r.locator("td").first.inner_text(): r.locator("td").all_inner_texts()[1:]
             for r in comparison.locator("tbody tr").all()}
    assert cells == {"y": ["1.786", "1.786", "–"], "positive": ["0.25", "1", "25.0%"]}, cells
    model.locator(f'.pyml-version[data-ref="{lab["name"]}/1"] .pyml-promote').wait_for(timeout=60_000)
    version.locator(".pyml-alias").wait_for(timeout=60_000)
    assert version.locator(".pyml-alias").inner_text() == "@champion"

    # Push to a registry that does not answer (a closed loopback port, typed into the settings editor): the
    # one-paragraph error says what is wrong and what to do, and nothing changed: no tag on the engine, none
    # recorded in MLflow, the version's badges as they were after the next refresh
    closed = f"127.0.0.1:{free_port()}"
    badges = version.locator(".pyml-badges").inner_text()
    _set_registry(page, closed)
    version.locator(".pyml-push").click()
    refused = version.locator('.pyml-job-failed[data-kind="push"]')
    refused.wait_for(timeout=120_000)
    message = refused.locator(".pyml-error").inner_text()
    assert f"The registry {closed} is not reachable" in message, message
    assert "start it or check the address" in message and "Nothing was tagged or pushed" in message
    assert "\n" not in message
    with page.expect_response(lambda r: "/pyml/models" in r.url, timeout=30_000):
        pass
    page.wait_for_timeout(500)  # the refresh's other answers, and a render
    assert version.locator(".pyml-badges").inner_text() == badges
    assert version.locator(".pyml-image-pushed").count() == 0
    assert TAG_PUSHED not in tracking.resolve_version(lab["name"], 2).tags
    import docker

    assert docker.from_env().images.list(name=f"{closed}/pyml/{lab['name']}") == []
    _shot(panel, "panel-4-push-unreachable.png")

    # Push to the registry of the settings, corrected: the version tag and the alias tag, recorded on the version
    _set_registry(page, lab["registry"])
    version.locator(".pyml-push").click()
    version.locator(f'.pyml-job[data-job-id="{refused.get_attribute("data-job-id")}"]').wait_for(state="detached")
    version.locator(".pyml-pushed, .pyml-job-failed, .pyml-error").first.wait_for(timeout=600_000)
    _no_error(version)
    pushed = version.locator(".pyml-pushed").inner_text()
    assert f"{lab['registry']}/pyml/{lab['name']}:2" in pushed and ":champion" in pushed
    version.locator(".pyml-image-pushed").wait_for(timeout=60_000)
    assert version.locator(".pyml-image-pushed").get_attribute("title").startswith(
        f"pushed as {lab['registry']}/pyml/{lab['name']}:2@sha256:")
    assert built.count() == 1  # the build's log is still there: no build since
    _shot(panel, "panel-5-promoted-pushed.png")

    # the same in the dark theme
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
    page.wait_for_timeout(500)
    _shot(panel, "panel-6-pushed-dark.png")

    # Stop: the container goes away
    version.locator(".pyml-stop").click()
    version.locator(".pyml-status-not-deployed").wait_for(timeout=120_000)
    assert version.locator(".pyml-container-log").count() == 0
    _shot(panel, "panel-7-stopped-dark.png")
    assert api.deployments() == [] or all(d.name != lab["name"] for d in api.deployments())


def test_the_settings_editor_holds_the_registry_and_default_resources():
    schema = json.loads((REPO / "labextension" / "schema" / "plugin.json").read_text())
    assert {"registry", "memory", "pidsLimit", "refreshInterval"} <= set(schema["properties"])
    package = json.loads((REPO / "labextension" / "package.json").read_text())
    assert package["jupyterlab"]["schemaDir"] == "schema"
    assert (BUILT_EXTENSION / "schemas" / "pyml_jupyter" / "plugin.json").is_file()
