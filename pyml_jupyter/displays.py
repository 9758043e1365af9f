"""Result tables for the notebook: each has ``_repr_html_`` and a plain-text ``__repr__``."""

from __future__ import annotations

import html
from typing import Any, Sequence

__all__ = ["ModelTable", "DeploymentTable"]


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<div><b>{html.escape(title)}</b><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _text(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str) -> str:
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


class _Table:
    headers: Sequence[str] = ()
    title = ""

    def rows(self) -> list[list[Any]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return _text(self.headers, self.rows(), self.title)

    def _repr_html_(self) -> str:
        return _table(self.headers, self.rows(), self.title)


class ModelTable(_Table):
    """Registered models and versions with contract, image and deployment state."""

    headers = ("model", "version", "aliases", "contract", "image", "deployment")

    def __init__(self, models: Sequence[Any], title: str = "Registered models") -> None:
        self.models = list(models)
        self.title = title if self.models else f"{title}: none registered yet"

    def rows(self) -> list[list[Any]]:
        out = []
        for m in self.models:
            for v in m.versions:
                out.append([m.name, v["version"], ", ".join(v.get("aliases") or []) or "-",
                            v.get("contract_status") or "unknown",
                            v["image"]["tag"] if v.get("image") else "-",
                            v["deployment"]["url"] if v.get("deployment") else "-"])
        return out


class DeploymentTable(_Table):
    """Deployments (containers) with their URL, gRPC target and status."""

    headers = ("model", "version", "status", "url", "grpc_target", "container")

    def __init__(self, deployments: Sequence[Any], title: str = "Deployments") -> None:
        self.deployments = list(deployments)
        self.title = title if self.deployments else f"{title}: none"

    def rows(self) -> list[list[Any]]:
        return [[d.name, d.version, getattr(d, "state", d.status), d.url, getattr(d, "grpc_target", "") or "-",
                 d.container_id[:12]] for d in self.deployments]

    def _logs(self) -> list[Any]:
        return [d for d in self.deployments if getattr(d, "log_tail", "")]

    def __repr__(self) -> str:
        text = super().__repr__()
        for d in self._logs():
            text += f"\n\n{d.name}/{d.version} {d.state}, last log lines:\n{d.log_tail}"
        return text

    def _repr_html_(self) -> str:
        from .deployment import log_tail_html

        logs = "".join(f"<div><b>{html.escape(f'{d.name}/{d.version}')}</b> {html.escape(d.state)}, last log lines:"
                       f"{log_tail_html(d.log_tail)}</div>" for d in self._logs())
        return super()._repr_html_() + logs
