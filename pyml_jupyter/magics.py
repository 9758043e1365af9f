"""IPython magics: thin faces over :mod:`pyml_jupyter.api`. ``%load_ext pyml_jupyter`` registers them.

Each magic parses its arguments (``%pyml_<name>?`` shows them), evaluates expressions in the user's namespace,
makes one API call and displays the result. A user mistake becomes a ``UsageError``: one clear paragraph,
no traceback.
"""

from __future__ import annotations

import ast
import functools
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from . import api
from .errors import HINT_BUILD, HINT_DEPLOYMENTS, HINT_PUSH, HINT_REGISTER, CheckFailed, PymlError, with_hint
from .progress import Progress
from .widgets import show_progress

__all__ = ["PymlMagics"]

# What to do next after a core error, in a notebook's words (errors.with_hint).
HINTS = {
    HINT_REGISTER: "Register it with %pyml_register (or pyml_jupyter.register()).",
    HINT_BUILD: "Build it with %pyml_build NAME/VERSION.",
    HINT_DEPLOYMENTS: "See %pyml_deployments.",
    HINT_PUSH: "Push it with %pyml_push NAME/VERSION --registry HOST[:PORT], or give the registry.",
}


def _unquote(value: Any) -> Any:
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _parse_args(magic: Callable, line: str):
    """``parse_argstring``, minus the quotes around values: IPython splits magic lines the non-POSIX way, which
    keeps them, so ``--sample "df.head(5)"`` would otherwise evaluate to the string ``'df.head(5)'``."""
    args = parse_argstring(magic, line)
    for key, value in vars(args).items():
        setattr(args, key, _unquote(value))
    return args


def _friendly(fn: Callable) -> Callable:
    """Turn PymlError into UsageError (no traceback); show a failed contract report before the message."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except CheckFailed as e:
            display(e.report)
            raise UsageError(with_hint(e, HINTS)) from None
        except PymlError as e:
            raise UsageError(with_hint(e, HINTS)) from None

    return wrapper


@magics_class
class PymlMagics(Magics):
    """``%pyml_check``, ``%pyml_register``, ``%pyml_models``, ``%pyml_build``, ``%pyml_deploy``,
    ``%pyml_deployments``, ``%pyml_stop``, ``%pyml_prune``, ``%pyml_test``, ``%pyml_batch``, ``%pyml_promote``,
    ``%pyml_push``, ``%pyml_export``."""

    # ------------------------------------------------------------------------------------------- evaluation

    def _eval(self, expr: str, what: str) -> Any:
        try:
            return eval(expr, self.shell.user_ns)  # noqa: S307 - evaluating the user's own expression is the point
        except NameError as e:
            raise UsageError(f"{what} `{expr}` refers to a name that is not defined in the notebook ({e}). "
                             "Run the cell that defines it first.") from None
        except SyntaxError as e:
            raise UsageError(f"{what} `{expr}` is not a valid Python expression ({e.msg}). "
                             "Quote expressions with spaces, e.g. --sample \"df.head(5)\".") from None
        except Exception as e:  # noqa: BLE001 - the user's expression failed; say so without a traceback
            raise UsageError(f"evaluating {what} `{expr}` raised {type(e).__name__}: {e}") from None

    def _model_class(self, name: str) -> type:
        if name not in self.shell.user_ns:
            raise UsageError(f"`{name}` is not defined in the notebook: define the model class in a cell first "
                             "(class MyModel(DataFrameModel): ...).")
        cls = self.shell.user_ns[name]
        if not isinstance(cls, type):
            raise UsageError(f"`{name}` is a {type(cls).__name__}, not a class: pass the model class itself, "
                             "not an instance.")
        return cls

    def _artifacts(self, items: list[str] | None) -> dict[str, Any]:
        artifacts: dict[str, Any] = {}
        for item in items or []:
            for part in item.split(","):
                key, sep, expr = part.partition("=")
                key, expr = key.strip(), expr.strip()
                if not sep:
                    expr = key  # `--artifacts clf` is short for `--artifacts clf=clf`
                if not key.isidentifier():
                    raise UsageError(f"artifact name `{key}` must be a Python identifier: use --artifacts name=EXPR, "
                                     "e.g. --artifacts clf=clf scaler=my_scaler.")
                artifacts[key] = self._eval(expr, f"artifact '{key}'")
        return artifacts

    # ------------------------------------------------------------------------------------------------ check

    @magic_arguments()
    @argument("model_class", help="the model class (a DataFrameModel or TensorModel subclass)")
    @argument("--sample", "-s", required=True, help="expression giving sample inputs, e.g. df.head(10)")
    @argument("--artifacts", "-a", nargs="*", help="name=EXPR pairs passed to the constructor as artifacts")
    @line_magic
    @_friendly
    def pyml_check(self, line: str):
        """Check a model class against the contract on sample inputs; shows the report."""
        args = _parse_args(self.pyml_check, line)
        report = api.check(self._model_class(args.model_class), self._eval(args.sample, "--sample"),
                           self._artifacts(args.artifacts), namespace=self.shell.user_ns)
        return report

    # --------------------------------------------------------------------------------------------- register

    @magic_arguments()
    @argument("model_class", nargs="?", help="the model class (line form); in the cell form, the class the cell defines")
    @argument("--name", "-n", required=True, help="registered model name, e.g. churn_model")
    @argument("--sample", "-s", required=True, help="expression giving sample inputs, e.g. df.head(10)")
    @argument("--artifacts", "-a", nargs="*", help="name=EXPR pairs passed to the constructor as artifacts")
    @argument("--experiment", help="MLflow experiment name (default: MLflow's default experiment)")
    @line_cell_magic
    @_friendly
    def pyml_register(self, line: str, cell: str | None = None):
        """Check a model class, log it to MLflow as a pyfunc model and register a new version.

        Line form: %pyml_register ModelClass --name NAME --sample EXPR [--artifacts name=EXPR ...]
        Cell form: %%pyml_register --name NAME --sample EXPR [...] runs the cell, then registers the model
        class it defines.
        """
        args = _parse_args(self.pyml_register, line)
        if cell is not None:
            class_name = self._run_cell_and_find_class(cell, args.model_class)
        elif not args.model_class:
            raise UsageError("name the model class: %pyml_register MyModel --name NAME --sample EXPR "
                             "(or use the cell form %%pyml_register above the class definition).")
        else:
            class_name = args.model_class
        registered = api.register(self._model_class(class_name), args.name, self._eval(args.sample, "--sample"),
                                  self._artifacts(args.artifacts), namespace=self.shell.user_ns,
                                  experiment=args.experiment)
        display(registered.report)
        return registered

    def _run_cell_and_find_class(self, cell: str, wanted: str | None) -> str:
        try:
            tree = ast.parse(cell)
        except SyntaxError as e:
            raise UsageError(f"the cell has a syntax error on line {e.lineno}: {e.msg}.") from None
        result = self.shell.run_cell(cell, store_history=False)
        if not result.success:
            raise UsageError("the cell raised an error (shown above), so nothing was registered.")
        defined = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
        if wanted:
            if wanted not in defined:
                raise UsageError(f"the cell does not define `{wanted}`; it defines: {', '.join(defined) or 'no class'}.")
            return wanted
        models = [n for n in defined if api.is_model_class(self.shell.user_ns.get(n))]
        if len(models) != 1:
            found = ", ".join(models) or "none"
            raise UsageError(f"the cell must define exactly one DataFrameModel/TensorModel subclass to register "
                             f"(found: {found}); name it: %%pyml_register MyModel --name ...")
        return models[0]

    # ------------------------------------------------------------------------------------------------ models

    @line_magic
    @_friendly
    def pyml_models(self, line: str = ""):
        """List registered models, their versions and contract / image / deployment status."""
        from .displays import ModelTable

        return ModelTable(api.list_models())

    # ------------------------------------------------------------------------------------- build and deploy

    def _with_progress(self, title: str, fn: Callable[[Progress], Any]) -> Any:
        progress = show_progress(Progress(title))
        with progress:
            return fn(progress)

    @magic_arguments()
    @argument("ref", help="NAME (latest version), NAME/VERSION or NAME@ALIAS")
    @argument("--base-image", help="base image (default: the slim Python image matching this kernel's Python)")
    @argument("--no-cache", action="store_true", help="rebuild every layer (ignore the engine's layer cache)")
    @line_magic
    @_friendly
    def pyml_build(self, line: str):
        """Build the Docker image of a registered model version, streaming the build log."""
        args = _parse_args(self.pyml_build, line)
        return self._with_progress(f"build {args.ref}", lambda p: api.build(args.ref, base_image=args.base_image,
                                                                           no_cache=args.no_cache, progress=p))

    @magic_arguments()
    @argument("ref", help="NAME (latest version), NAME/VERSION or NAME@ALIAS")
    @argument("--port", type=int, help="host port on 127.0.0.1 (default: a free one)")
    @argument("--base-image", help="base image if the image has to be built")
    @argument("--memory", help="memory limit of the container, e.g. 512m or 8g (default: 4g)")
    @argument("--pids-limit", type=int, help="processes and threads the container may run (default: 1024)")
    @argument("--allowed-hosts", help="comma-separated Host names to serve besides loopback and the container's "
                                      "own (.example.com: its subdomains too; *: any)")
    @argument("--token", action="store_true", help="require a random bearer token (the Deployment sends it)")
    @line_magic
    @_friendly
    def pyml_deploy(self, line: str):
        """Run a registered model version as a container on 127.0.0.1 (building its image if needed)."""
        args = _parse_args(self.pyml_deploy, line)
        return self._with_progress(f"deploy {args.ref}", lambda p: api.deploy(
            args.ref, port=args.port, base_image=args.base_image, memory=args.memory, pids_limit=args.pids_limit,
            allowed_hosts=args.allowed_hosts, token=args.token or None, progress=p))

    @line_magic
    @_friendly
    def pyml_deployments(self, line: str = ""):
        """List running deployments (asked from the Docker engine)."""
        from .displays import DeploymentTable

        return DeploymentTable(api.deployments())

    @magic_arguments()
    @argument("ref", help="NAME (all versions), NAME/VERSION or NAME@ALIAS")
    @line_magic
    @_friendly
    def pyml_stop(self, line: str):
        """Stop and remove a deployment."""
        args = _parse_args(self.pyml_stop, line)
        from .displays import DeploymentTable

        return DeploymentTable(api.stop(args.ref), title="Stopped")

    @magic_arguments()
    @argument("name", help="the model whose old images are removed")
    @argument("--keep", type=int, default=1, help="how many of the newest images to keep (default 1)")
    @line_magic
    @_friendly
    def pyml_prune(self, line: str):
        """Remove a model's old Docker images: all but the --keep newest, never one a container uses."""
        args = _parse_args(self.pyml_prune, line)
        removed = api.prune(args.name, keep=args.keep)
        print(f"Removed {len(removed)} image(s) of {args.name}" + "".join(f"\n  {image!r}" for image in removed))

    @magic_arguments()
    @argument("ref", help="NAME (latest version), NAME/VERSION or NAME@ALIAS")
    @argument("--sample", "-s", help="expression giving inputs (default: the sample stored at registration)")
    @argument("--target", "-t", default="container", choices=list(api.TEST_TARGETS),
              help="where to predict besides the notebook: the running container (default), Spark, or all")
    @argument("--all", action="store_true",
              help="every target: a fresh process, the container over HTTP and gRPC, and Spark, in one table")
    @line_magic
    @_friendly
    def pyml_test(self, line: str):
        """Predict the sample in the notebook and on the container (or Spark, or --all targets); show them side
        by side."""
        args = _parse_args(self.pyml_test, line)
        sample = self._eval(args.sample, "--sample") if args.sample else None
        target = "all" if args.all else args.target
        return self._with_progress(f"test {args.ref}", lambda p: api.test(args.ref, sample, target=target, progress=p))

    # --------------------------------------------------------------------------------------------- batch

    @magic_arguments()
    @argument("ref", help="NAME (latest version), NAME/VERSION or NAME@ALIAS")
    @argument("--query", "-q", help="SQL query whose columns match the model's inputs (cell form: the cell body)")
    @argument("--output", "-o", required=True, help="destination table, [database.]table")
    @argument("--keep", "-k", help="comma-separated input columns to keep beside the predictions (default: all)")
    @argument("--mode", "-m", default="error", choices=["error", "overwrite", "append"],
              help="what to do when the table exists (default: error)")
    @line_cell_magic
    @_friendly
    def pyml_batch(self, line: str, cell: str | None = None):
        """Score a SQL query's rows with a registered model on Spark into a table.

        %pyml_batch NAME[/VERSION] --query "SELECT ..." --output TABLE, or the cell form, whose body is the query.
        """
        args = _parse_args(self.pyml_batch, line)
        query = (cell or "").strip() or args.query
        if not query:
            raise UsageError("give the query: %pyml_batch NAME --query \"SELECT ...\" --output TABLE, or put it in the "
                             "cell body under %%pyml_batch NAME --output TABLE.")
        return self._with_progress(
            f"batch {args.ref}",
            lambda p: api.predict_offline(args.ref, query, args.output, keep=args.keep, mode=args.mode, progress=p),
        )

    # ------------------------------------------------------------------------------- promote, push, export

    @magic_arguments()
    @argument("ref", help="NAME/VERSION (or NAME: the latest version) to promote")
    @argument("--alias", "-a", default="champion", help="the MLflow alias to point at it (default: champion)")
    @argument("--compare", "-c", help="also compare predictions with this alias or version, e.g. champion")
    @argument("--targets", "-t", default="all", choices=list(api.TEST_TARGETS),
              help="where the parity gate predicts the stored sample (default: all targets)")
    @line_magic
    @_friendly
    def pyml_promote(self, line: str):
        """Point an alias (champion) at a version once its contract and parity gates pass."""
        args = _parse_args(self.pyml_promote, line)
        return self._with_progress(f"promote {args.ref}", lambda p: api.promote(
            args.ref, args.alias, compare=args.compare, targets=args.targets, progress=p))

    @magic_arguments()
    @argument("ref", help="NAME/VERSION or NAME@ALIAS whose image to push")
    @argument("--registry", "-r", required=True, help="HOST[:PORT][/PATH], e.g. registry.example.com")
    @line_magic
    @_friendly
    def pyml_push(self, line: str):
        """Tag a version's image REGISTRY/pyml/NAME:VERSION (plus alias tags) and push it."""
        args = _parse_args(self.pyml_push, line)
        return self._with_progress(f"push {args.ref}", lambda p: api.push(args.ref, args.registry, progress=p))

    @magic_arguments()
    @argument("ref", help="NAME/VERSION or NAME@ALIAS")
    @argument("--format", "-f", default="kserve", choices=["kserve", "kubernetes"],
              help="kserve: an InferenceService; kubernetes: Deployment + Service + HorizontalPodAutoscaler")
    @argument("--registry", "-r", help="HOST[:PORT][/PATH] the image is pushed to (default: where it was pushed)")
    @argument("--output", "-o", help="file or folder to write (default: NAME-vVERSION.FORMAT.yaml here)")
    @line_magic
    @_friendly
    def pyml_export(self, line: str):
        """Write Kubernetes or KServe manifests for a version's pushed image."""
        args = _parse_args(self.pyml_export, line)
        return self._with_progress(f"export {args.ref}", lambda p: api.export(
            args.ref, args.format, registry=args.registry, output=args.output, progress=p))
