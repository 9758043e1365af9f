"""A CSV body's rows counted on its bytes (serving/csv_rows.py): its first row wider than its header, as pandas'
own C tokenizer finds it when it is not told to build only some columns. Read with no header, pandas stops at the
first row wider than the first one that is not blank: "Expected H fields in line L, saw N"; that is the oracle."""

from __future__ import annotations

import io
import random
import re

import pandas as pd
import pytest

from pyml_jupyter.serving.csv_rows import WideRow, first_wide_row


def pandas_finds(body: bytes) -> tuple[int, int] | None:
    """The (values, header's values) of the first wide row pandas' tokenizer finds in ``body``, or None."""
    try:
        pd.read_csv(io.BytesIO(body), header=None, dtype=str)
    except pd.errors.EmptyDataError:
        return None
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line \d+, saw (\d+)", str(exc))
        assert found, exc
        return int(found[2]), int(found[1])
    return None


CASES = [  # body, its first row wider than the header: (the line it starts on, its values, the header's)
    (b"x,city\n1,paris\n2,lyon\n", None),
    (b"x,city\n1,paris,extra\n2,lyon\n", WideRow(2, 3, 2)),
    (b"x,city\n1,paris\n2,lyon,\n", WideRow(3, 3, 2)),  # a trailing separator: one more value, empty
    (b"x,city\n1,paris,a\n2,lyon,b\n", WideRow(2, 3, 2)),  # all wider: pandas alone would make x the index
    (b"x,city\n1,paris\n2\n", None),  # a shorter row is no wider
    (b'x,city\n1,"paris, france"\n2,"a,b,c"\n', None),  # separators inside quotes
    (b'x,city\n1,"paris,\nfrance"\n2,"lyon\r\n,"\n', None),  # line ends inside quotes
    (b'x,city\n1,"paris,\nfrance"\n2,lyon,extra\n', WideRow(4, 3, 2)),  # lines counted inside quotes too
    (b'x,city\n1,"say ""a,b"""\n2,"""",x\n', WideRow(3, 3, 2)),  # "" is a quote inside a quoted field
    (b'"x,y",city\n1,2,3\n', WideRow(2, 3, 2)),  # a quoted header name
    (b"x,city\r\n1,paris\r\n2,lyon,extra\r\n", WideRow(3, 3, 2)),
    (b"x,city\r1,paris\r2,lyon,extra\r", WideRow(3, 3, 2)),
    (b"\n \nx,city\n\n1,paris,extra\n", WideRow(5, 3, 2)),  # blank lines before the header and between rows
    (b'x,city\n12" screen,paris\n', None),  # a quote inside a plain field is a plain character
    (b'x,city\n12" screen,paris\n3,"a,b",extra\n', WideRow(3, 3, 2)),
    (b"\xef\xbb\xbfx,city\n1,paris,extra\n", WideRow(2, 3, 2)),  # a byte order mark
]


@pytest.mark.parametrize("body, wide", CASES, ids=lambda v: repr(v)[:40])
def test_the_first_row_wider_than_the_header_is_the_one_pandas_finds(body, wide):
    assert first_wide_row(body) == wide
    assert pandas_finds(body) == (wide and (wide.values, wide.header))


@pytest.mark.parametrize("body", [b"", b"\n\r\n  \n", b'x,city\n1,"paris\n', b'x,city\n1,"paris,x,y,z\n'])
def test_an_empty_body_or_one_whose_quote_never_closes_has_no_wide_row(body):
    assert first_wide_row(body) is None  # pandas refuses the latter itself: "EOF inside string"


def random_body(rng: random.Random) -> bytes:
    """A CSV body of quoted and plain fields, rows of random widths, \\n or \\r\\n line ends, blank lines."""
    fields = ["1", "", "paris", '"a,b"', '"two\nlines"', '"cr\r\nlf"', '"say ""hi"""', '""', '","', '"\n"']
    end = rng.choice(["\n", "\r\n"])
    width = rng.randint(1, 4)
    lines = [",".join(f"h{i}" for i in range(width))]
    for _ in range(rng.randint(0, 6)):
        lines.append("" if rng.random() < 0.1 else ",".join(
            rng.choice(fields) for _ in range(max(1, width + rng.choice([-1, 0, 0, 0, 0, 1, 2])))))
    return (end.join(lines) + rng.choice(["", end])).encode()


def test_random_bodies_agree_with_pandas():
    rng = random.Random(9)
    found = 0
    for _ in range(1_500):
        body = random_body(rng)
        wide = first_wide_row(body)
        assert (wide and (wide.values, wide.header)) == pandas_finds(body), body
        found += wide is not None
    assert 300 < found < 1_200  # both verdicts were tried
