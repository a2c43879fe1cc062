"""The README's rule "one symbol, one meaning" holds in its two tables of symbols.

``derivations/README.md`` has a first table of the symbols shared by several files and a second of
the symbols of one file (``| file | symbols | meaning |``). A symbol is one ``$...$`` of a row's
symbol cell, read up to its definition (``$z = X\\theta$`` defines ``z``, ``$\\sigma(z) = ...$``
defines ``\\sigma``, ``$\\lambda \\ge 0$`` defines ``\\lambda``). The checks:

* no symbol has two rows of the first table;
* no symbol is listed twice among one file's rows;
* no file's rows list a symbol of the first table (a file may use a shared symbol only in its
  shared meaning, so listing it again gives it a second one);
* every ``derivations/*.md`` but the README has rows in the second table or is named in the
  sentence "Files without symbols of their own ...: ..." below it, and every file named exists.

The checks are written as functions of the README's text, so that the tests below can also show
each of them failing on a copy with one duplicate added.
"""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent / "derivations"
MATH = re.compile(r"\$([^$]+)\$")
DECORATED = re.compile(r"\\(mathcal|mathbf|mathrm|bar|tilde|hat|dot)\s+(\\?[A-Za-z]+)")
FUNCTION = re.compile(r"^(\\?[A-Za-z]+(?:\{[^{}]*\})?)\(")
SHARED_ONLY = re.compile(r"Files without symbols of their own[^:]*:\s+(none|[\w.-]+\.md(?:,\s+[\w.-]+\.md)*)")


def symbols(cell, arguments=True):
    """The symbols a table cell defines, normalised (``\\bar A`` and ``\\bar{A}`` are one); with
    ``arguments`` false a function keeps its argument (the one-file table lists ``p(\\mathcal{T})``,
    the seed tutorial's task distribution as it quotes it, which is not the probability ``p``)."""
    found = MATH.findall(cell)
    if not found:
        return [cell.strip()] if cell.strip() else []
    out = []
    for s in found:
        s = DECORATED.sub(r"\\\1{\2}", s.strip())
        if not s.startswith("["):   # [c = e] is itself the symbol
            s = re.split(r"\s*(?:=|\\in\b|\\ge\b|\\le\b|>|<)\s*", s, maxsplit=1)[0]
            m = FUNCTION.match(s) if arguments else None
            s = m.group(1) if m else s
        out.append(re.sub(r"\s+", "", s))
    return out


def _rows(block):
    rows = []
    for line in block.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if set("".join(cells)) <= set("-: "):
            continue
        rows.append(cells)
    return rows[1:]   # the header row


def tables(text):
    """``(shared, one_file, shared_only)``: the first table's rows as symbol lists, the second's
    as ``(file, symbols)``, and the files named as using the shared symbols only."""
    notation = text[text.index("\n## Notation\n"):]
    one = notation.index("\n### Symbols of one file\n")
    shared = [symbols(cells[0]) for cells in _rows(notation[:one])]
    one_file = [(cells[0], symbols(cells[1], arguments=False)) for cells in _rows(notation[one:])]
    m = SHARED_ONLY.search(notation[one:])
    assert m, "the sentence 'Files without symbols of their own ...: ...' is missing"
    only = [] if m.group(1) == "none" else [f.strip() for f in m.group(1).split(",")]
    return shared, one_file, only


def problems(text, files):
    """Every breach of the rules above, as sentences (empty when the tables hold)."""
    shared, one_file, only = tables(text)
    out, seen = [], {}
    for row, syms in enumerate(shared):
        for s in syms:
            if s in seen and seen[s] != row:
                out.append(f"{s} has two rows of the shared table")
            seen[s] = row
    per_file = {}
    for name, syms in one_file:
        if name not in files:
            out.append(f"the one-file table names {name}, which is not a derivation file")
        for s in syms:
            if s in per_file.setdefault(name, set()):
                out.append(f"{s} is listed twice among the rows of {name}")
            per_file[name].add(s)
            if s in seen:
                out.append(f"{name} lists {s}, a symbol of the shared table")
    for name in only:
        if name not in files:
            out.append(f"{name} is named as without symbols of its own, but is not a derivation file")
    for name in files:
        if name not in per_file and name not in only:
            out.append(f"{name} has no row in the one-file table and is not named as without symbols of its own")
    return out


def _readme():
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _files():
    return sorted(p.name for p in ROOT.glob("*.md") if p.name != "README.md")


def test_the_tables_are_read():
    """The parser finds the tables (a parse that found nothing would pass every check): the
    shared table has its 40-odd rows, among them the curvature W_i, and every file has rows."""
    shared, one_file, _ = tables(_readme())
    assert len(shared) >= 30 and len(one_file) >= 30
    assert ["W_i", "W^{(i)}"] in shared
    assert ["\\sigma"] in shared and ["\\lambda"] in shared and ["z"] in shared
    assert {name for name, _ in one_file} >= {"oracle.md", "training.md", "mlp.md", "conv.md"}


def test_one_symbol_one_meaning():
    assert problems(_readme(), _files()) == []


def test_a_duplicate_in_the_shared_table_is_found():
    """W_i given a second row, as the table once had it: the check fails on that copy."""
    text = _readme()
    row = "| $d$ | number of features | `X.shape[-1]` |\n"
    assert row in text
    broken = text.replace(row, row + "| $\\ell(z, y)$, $W_i$ | the head's curvature again | `heads` |\n", 1)
    found = problems(broken, _files())
    assert "W_i has two rows of the shared table" in found
    assert "\\ell has two rows of the shared table" in found


def test_a_duplicate_among_one_files_rows_is_found():
    """A file's symbol listed twice, a shared symbol redefined, a file without rows: each found."""
    text = _readme()
    before = set(problems(text, _files()))   # empty when test_one_symbol_one_meaning passes
    row = "| checks.md | $h$, $e_j$ | difference step; unit vector $j$ |\n"
    assert row in text
    found = set(problems(text.replace(row, row + "| checks.md | $h$, $\\lambda$ | again |\n", 1), _files())) - before
    assert found == {"h is listed twice among the rows of checks.md", "checks.md lists \\lambda, a symbol of the shared table"}
    found = set(problems(text.replace(row, "", 1), _files())) - before
    assert found == {"checks.md has no row in the one-file table and is not named as without symbols of its own"}
    named = text.replace(row, "", 1).replace("exercises-core.md, exercises", "checks.md, exercises-core.md, exercises", 1)
    assert set(problems(named, _files())) - before == set()
