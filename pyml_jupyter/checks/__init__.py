"""The contract check: run a model class on sample inputs before anything ships.

:func:`run_check` captures the class into a package (in a temporary folder), exercises it in this process and
in a fresh Python process, and returns a :class:`ContractReport`: named checks, each pass / warn / fail with a
message that says what to fix. ``register()`` refuses a model whose report is not ``ok``.

The checks run in order as the steps of :mod:`.steps`; :mod:`.report` holds the report and :mod:`.fresh_process`
the new interpreter that loads the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..serving.contract import model_kind
from .report import FAIL, PASS, SKIP, WARN, CheckResult, ContractReport
from .steps import ALL_CHECKS, STEPS, CheckRun, Stop, raised

__all__ = ["CheckResult", "ContractReport", "run_check", "ALL_CHECKS", "PASS", "WARN", "FAIL", "SKIP"]


def run_check(
    model_class: type,
    sample: Any,
    artifacts: Mapping[str, Any] | None = None,
    *,
    namespace: Mapping[str, Any] | None = None,
    package_dir: Path | None = None,
    fresh_process_timeout: float = 300.0,
) -> ContractReport:
    """Check ``model_class`` against the contract on ``sample``; the package is written to ``package_dir``.

    With ``package_dir=None`` a temporary folder is used (``report.package_dir``), removed with the report.
    Never raises because of the model: whatever it raises, on whichever input, becomes a failed line.
    """
    report = ContractReport(class_name=getattr(model_class, "__name__", repr(model_class)), kind=model_kind(model_class))
    run = CheckRun(report, model_class, sample, artifacts or {}, namespace,
                   Path(package_dir) if package_dir else None, fresh_process_timeout)
    try:
        for name, step in STEPS:
            try:
                step(run)
            except Stop:
                break
            except Exception as e:  # noqa: BLE001 - check() never raises because of what the model does
                run.add(name or "package", FAIL, f"the {name or 'package'} check could not complete on the "
                        f"sample: {raised(e)}")
                break
    finally:
        if run.fresh is not None:
            run.fresh.close()
    done = {c.name for c in report.checks}
    for skipped in ALL_CHECKS:
        if skipped not in done:
            report.add(skipped, SKIP, "not run: an earlier check failed")
    return report
