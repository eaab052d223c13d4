"""README tables from ``benchmarks/results/*.json``: one row per case and level, one column per method.

    python benchmarks/tables.py enhance_denoise_real.json
    python benchmarks/tables.py enhance_superres_real.json --against cubic

Each cell is PSNR in dB (time in s for the named methods); ``--against M`` adds each method's gain
over ``M``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def table(rows: list[dict], against: str | None, timed: set[str]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = list(dict.fromkeys((r["case"], r["level"]) for r in rows))
    cell = {(r["case"], r["level"], r["method"]): r for r in rows}
    out = ["| case | level | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for case, level in keys:
        base = cell.get((case, level, against)) if against else None
        cells = []
        for m in methods:
            r = cell.get((case, level, m))
            if r is None:
                cells.append("")
                continue
            text = f"{r['psnr']:.2f}"
            if base is not None and m != against:
                text += f" ({r['psnr'] - base['psnr']:+.2f})"
            if m in timed:
                text += f", {r['time_s']:.1f} s"
            cells.append(text)
        out.append(f"| {case} | {level} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="results file (a bare name is looked up in benchmarks/results/)")
    parser.add_argument("--against", default=None, help="method whose PSNR the others are compared with")
    parser.add_argument("--timed", default="medgen default,BM4D (true sigma)", help="methods to show times for")
    args = parser.parse_args()
    path = Path(args.file) if Path(args.file).parent != Path(".") else RESULTS / args.file
    record = json.loads(path.read_text())
    print(f"<!-- {record['command']} @ {record['commit'][:7]}{' (dirty)' if record.get('dirty') else ''}, "
          f"{record['date']} -->")
    print(table(record["rows"], args.against, set(args.timed.split(","))))


if __name__ == "__main__":
    main()
