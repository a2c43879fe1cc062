"""Plain-text tables for the command line: the one table printer."""


def table(header, rows, *, rule=True, ragged=False):
    """Columns padded to their widest cell, two spaces apart, a rule under the header (``rule``).

    ``ragged``: the last column is not padded (its rule as long as its header) and no line ends in
    spaces, for a last column of long free text.
    """
    rows = [[str(c) for c in row] for row in rows]
    header = [str(c) for c in header]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    if ragged:
        widths[-1] = 0

    def line(cells):
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return text.rstrip() if ragged else text

    rules = [line(["-" * (w or len(h)) for w, h in zip(widths, header, strict=True)])] if rule else []
    return "\n".join([line(header), *rules] + [line(row) for row in rows])
