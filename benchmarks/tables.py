"""Markdown tables of benchmarks/README.md from the JSON that ``bench.py --out`` writes.

    python benchmarks/tables.py benchmarks/results-cpu-float64.json

prints, for each group of configurations, the median time per call with each peer's ratio to
refmaml's fastest form, the time to first answer, and the roofline table. Nothing is measured
here: the numbers are the file's.
"""

import json
import sys


def _config(c):
    return ", ".join(str(c[k]) for k in ("T", "n", "m", "d", "K"))


def _ms(seconds):
    return f"{seconds * 1e3:.2f} ms"


def times(rows):
    names = []
    for r in rows:
        for k in r["results"]:
            if k not in names:
                names.append(k)
    lines = ["| T, n, m, d, K | auto | " + " | ".join(names) + " | floor / best |",
             "|" + "---|" * (len(names) + 3)]
    for r in rows:
        cells = []
        for k in names:
            v = r["results"].get(k, {})
            if "median_s" in v:
                cells.append(f"{_ms(v['median_s'])} (×{v['ratio_to_refmaml']:.2f})" + ("" if v["agrees"] else " !"))
            else:
                cells.append("error" if "error" in v else "-")
        floor = r["roofline"]["fraction_of_floor"]
        lines.append(f"| {_config(r['config'])} | {r['auto_form']} | " + " | ".join(cells)
                     + f" | {floor:.2f} |")
    return "\n".join(lines)


def first_calls(groups):
    names = []
    for rows in groups:
        for r in rows:
            for k in r["results"]:
                if k not in names:
                    names.append(k)
    lines = ["| T, n, m, d, K | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for rows in groups:
        for r in rows:
            cells = [f"{r['results'][k]['first_s'] * 1e3:.1f}" if "first_s" in r["results"].get(k, {}) else "-"
                     for k in names]
            lines.append(f"| {_config(r['config'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _si(x, unit):
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _duration(s):
    return f"{s * 1e6:.2g} µs" if s < 1e-4 else _ms(s)


def roofline(rows, ceilings):
    lines = ["| T, n, m, d, K | form | flops | bytes | compute floor | memory floor | refmaml | fraction of floor |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["roofline"]
        best = min(v["median_s"] for k, v in r["results"].items() if k.startswith("refmaml") and "median_s" in v)
        lines.append(f"| {_config(r['config'])} | {r['auto_form']} | {_si(f['flops'], '')} | {_si(f['bytes'], 'B')} | "
                     f"{_duration(f['flops'] / ceilings['gemm_flops'])} | "
                     f"{_duration(f['bytes'] / ceilings['bandwidth_bytes'])} | {_ms(best)} | "
                     f"{f['fraction_of_floor']:.2f} |")
    return "\n".join(lines)


def threads(rows):
    names = ["one thread", "task groups, BLAS free", "task groups, BLAS held", "pairs, BLAS held"]
    lines = ["| T, n, m, d, K | form | Mflop | " + " | ".join(names) + " | default |",
             "|" + "---|" * (len(names) + 4)]
    for r in rows:
        cells = [_ms(r[k]) if k in r else "-" for k in names]
        lines.append(f"| {_config(r['config'])} | {r['form']} | {r['flops'] / 1e6:.0f} | "
                     + " | ".join(cells) + f" | {r['default']} |")
    return "\n".join(lines)


def main(path):
    with open(path) as f:
        result = json.load(f)
    if "threads" in result:
        print(threads(result["threads"]))
        return
    m, c = result["machine"], result["ceilings"]
    print(f"machine: {m.get('cpu')} ({m.get('cores')} cores), NumPy {m.get('numpy')}, "
          f"GEMM {c['gemm_flops'] / 1e9:.1f} GFLOP/s, memory {c['bandwidth_bytes'] / 1e9:.1f} GB/s")
    groups = [k for k in result if isinstance(result[k], list) and result[k] and "results" in result[k][0]
              and "d" in result[k][0]["config"]]  # the networks' rows have tables of their own
    for g in groups:
        print(f"\n#### {g}\n")
        print(times(result[g]))
    print("\n#### time to first answer (ms)\n")
    print(first_calls([result[g] for g in groups]))
    if "configurations" in result:
        print("\n#### roofline\n")
        print(roofline(result["configurations"], c))


if __name__ == "__main__":
    main(sys.argv[1])
