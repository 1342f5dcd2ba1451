"""Run lessons in full mode (``lite = False``) on the CPU and keep what they produce.

    python benchmarks/full_mode.py --lessons 01      # one lesson (minutes to half an hour)
    python benchmarks/full_mode.py                   # every lesson (hours on 2 cores)

Each lesson runs once, in a fresh process, with the course's pinned kernels, seed 0 and its
default parameters except ``lite = False``. The wall time, the peak memory and every result
the lesson publishes go to ``benchmarks/full_mode.json``; ``docs/full_mode.md`` is the table
made from it. A lesson's "Lite and full" box reads its full-mode numbers from that file, so
what the lesson says about full mode is what full mode produced. A lesson that does not
finish within ``--limit`` minutes is recorded as such (it needs a GPU, or a smaller full
mode).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from lessons import cpu_name, measure  # noqa: E402

from mlcourse.full_mode import RECORD, render_table  # noqa: E402
from mlcourse.notebooks import lesson_paths  # noqa: E402

FULL_MODE_JSON = ROOT / RECORD
TABLE_MD = ROOT / "docs" / "full_mode.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lessons", nargs="*", default=None, help="numbers, e.g. 01 03")
    parser.add_argument("--limit", type=float, default=30.0, help="minutes allowed per lesson")
    args = parser.parse_args(argv)
    paths = lesson_paths()
    if args.lessons:
        paths = [p for p in paths if any(p.name.startswith(n) for n in args.lessons)]
        if not paths:
            parser.error(f"no lesson numbered {', '.join(args.lessons)}")
    table = json.loads(FULL_MODE_JSON.read_text()) if FULL_MODE_JSON.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            print(f"running {path.stem} in full mode ...", file=sys.stderr, flush=True)
            entry = {"date": dt.date.today().isoformat(), "machine": cpu_name()}
            try:
                run = run_with_limit(path, Path(tmp), args.limit * 60)
            except subprocess.TimeoutExpired:
                entry |= {"finished": False, "limit_min": args.limit}
            else:
                entry |= {"finished": True, "wall_s": run["wall_s"],
                          "peak_rss_mb": run["peak_rss_mb"], "results": run["results"]}  # fmt: skip
            table[path.stem] = entry
            FULL_MODE_JSON.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    TABLE_MD.write_text(render_table(table))
    print(TABLE_MD.read_text())
    return 0


def run_with_limit(path: Path, folder: Path, seconds: float) -> dict:
    """One full-mode run; subprocess.TimeoutExpired past ``seconds``."""
    return measure(path.resolve(), path.parent, folder, parameters={"lite": False}, timeout=seconds)


if __name__ == "__main__":
    raise SystemExit(main())
