"""What a batch job wrote: :class:`BatchResult`."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchResult:
    """What a batch job wrote: the table, how many rows, how fast; ``ref`` names the model version."""

    output_table: str
    rows: int
    seconds: float
    mode: str = "error"
    columns: list[str] = field(default_factory=list)
    package: str | None = None
    package_digest: str | None = None
    ref: str | None = None
    run_id: str | None = None
    rows_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.rows_per_second = self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"output_table": self.output_table, "rows": self.rows, "seconds": self.seconds,
                "rows_per_second": self.rows_per_second, "mode": self.mode, "columns": list(self.columns),
                "package": self.package, "package_digest": self.package_digest, "ref": self.ref,
                "run_id": self.run_id}

    def _facts(self) -> list[tuple[str, str]]:
        facts = [("table", self.output_table), ("rows", f"{self.rows:,}"), ("time", f"{self.seconds:.1f} s"),
                 ("speed", f"{self.rows_per_second:,.0f} rows/s"), ("mode", self.mode),
                 ("columns", ", ".join(self.columns))]
        if self.ref:
            facts.insert(0, ("model", self.ref))
        return facts

    def __repr__(self) -> str:
        model = f"{self.ref} -> " if self.ref else ""
        return (f"BatchResult({model}{self.output_table}: {self.rows:,} rows in {self.seconds:.1f} s, "
                f"{self.rows_per_second:,.0f} rows/s, mode={self.mode})")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in self._facts())
        return f"<div><b>Batch predictions written</b><table>{rows}</table></div>"
