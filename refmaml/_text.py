"""Plain-text tables for the command line: the one table printer."""

WIDTH = 100  # the columns a printed table fits in


def table(header, rows, *, rule=True, ragged=False, width=WIDTH):
    """Columns padded to their widest cell, two spaces apart, a rule under the header (``rule``).

    ``ragged``: the last column is not padded (its rule as long as its header) and no line ends in
    spaces, for a last column of long free text.

    A table wider than ``width`` columns (not ``ragged``; None: no limit) is stacked: each row's
    first cell on a line of its own, the other cells on the next line, indented by two.
    """
    rows = [[str(c) for c in row] for row in rows]
    header = [str(c) for c in header]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    if ragged:
        widths[-1] = 0
    elif width is not None and len(header) > 1 and sum(widths) + 2 * (len(widths) - 1) > width:
        rest = table(header[1:], [row[1:] for row in rows], rule=rule, width=None).split("\n")
        rules = 1 if rule else 0
        out = [header[0]] + ["  " + r for r in rest[:1 + rules]]
        for row, other in zip(rows, rest[1 + rules:], strict=True):
            out += [row[0], "  " + other]
        return "\n".join(line.rstrip() for line in out)

    def line(cells):
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return text.rstrip() if ragged else text

    rules = [line(["-" * (w or len(h)) for w, h in zip(widths, header, strict=True)])] if rule else []
    return "\n".join([line(header), *rules] + [line(row) for row in rows])
