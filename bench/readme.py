"""Shared by the benchmarks: rewrite one ``## Section`` of bench/README.md, leaving the others as they are."""

from __future__ import annotations

import re
import time
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_section(title: str, script: str, body: str, *, how: str = "", path: Path = README) -> None:
    """Replace (or append) ``## {title}`` with a header naming ``script`` and the date, then ``body``.

    The file is read right before writing: other benchmarks rewrite their own sections.
    """
    how = f", `{how}`" if how else ""
    section = f"## {title}\n\nMeasured by `{script} --write-readme` ({time.strftime('%Y-%m-%d')}{how}).{body}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
