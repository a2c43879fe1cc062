"""Plain-text tables for the command line."""


def table(header, rows):
    """Columns padded to their widest cell, two spaces apart, a rule under the header."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(line[i]) for line in [list(header), *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    return "\n".join(lines + [fmt.format(*line) for line in rows])
