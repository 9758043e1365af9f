"""The contract check's report: named checks, each pass / warn / fail / skipped with a message."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..serving.schema import DataFrameSchema, TensorSchema

__all__ = ["CheckResult", "ContractReport", "PASS", "WARN", "FAIL", "SKIP"]

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skipped"
_ICONS = {PASS: "✓", WARN: "!", FAIL: "✗", SKIP: "–"}
_COLORS = {PASS: "#1a7f37", WARN: "#9a6700", FAIL: "#cf222e", SKIP: "#6e7781"}


@dataclass
class CheckResult:
    """One named check: its status and a message that says what to fix."""

    name: str
    status: str
    message: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message}


@dataclass
class ContractReport:
    """The outcome of :func:`run_check`. ``ok`` is true when no check failed (warnings allowed)."""

    class_name: str
    kind: str | None
    checks: list[CheckResult] = field(default_factory=list)
    input_schema: DataFrameSchema | TensorSchema | None = None
    output_schema: DataFrameSchema | TensorSchema | None = None
    requirements: list[str] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)
    package_dir: Path | None = None
    sample: Any = field(default=None, repr=False)  # the sample as the model saw it (schema enforced)
    output: Any = field(default=None, repr=False)  # the model's prediction on it, in this process

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    @property
    def status(self) -> str:
        return "passed" if self.ok else "failed"

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == FAIL]

    def add(self, name: str, status: str, message: str = "") -> CheckResult:
        result = CheckResult(name, status, message)
        self.checks.append(result)
        return result

    def get(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def summary(self) -> str:
        """One paragraph: what failed and how to fix it."""
        if self.ok:
            warns = [c for c in self.checks if c.status == WARN]
            extra = f" ({len(warns)} warning{'s' * (len(warns) != 1)})" if warns else ""
            return f"{self.class_name} passed the contract check{extra}."
        lines = [f"{self.class_name} failed the contract check:"]
        lines += [f"- {c.name}: {c.message}" for c in self.failures]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_name": self.class_name,
            "kind": self.kind,
            "ok": self.ok,
            "status": self.status,
            "checks": [c.to_dict() for c in self.checks],
            "input_schema": self.input_schema.to_dict() if self.input_schema else None,
            "output_schema": self.output_schema.to_dict() if self.output_schema else None,
            "requirements": self.requirements,
            "latency": self.latency,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __repr__(self) -> str:
        width = max((len(c.name) for c in self.checks), default=10)
        lines = [f"ContractReport({self.class_name}): {self.status.upper()}"]
        for c in self.checks:
            lines.append(f"  {_ICONS[c.status]} {c.name.ljust(width)}  {c.status:<7} {c.message}".rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='color:{_COLORS[c.status]};font-weight:bold'>{_ICONS[c.status]} {c.status}</td>"
            f"<td><code>{html.escape(c.name)}</code></td><td style='text-align:left'>{html.escape(c.message)}</td></tr>"
            for c in self.checks
        )
        color = _COLORS[PASS if self.ok else FAIL]
        return (
            f"<div class='pyml-contract-report'><b>Contract check for <code>{html.escape(self.class_name)}</code>: "
            f"<span style='color:{color}'>{self.status}</span></b>"
            f"<table><thead><tr><th>status</th><th>check</th><th style='text-align:left'>details</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
