"""Run every benchmark script in bench/ in turn; exit non-zero if any of them fails.

Each script prints its side-by-side table and saves it as CSV under ``bench/results/``.
Usage: ``python bench/run_all.py [NAME ...]`` (names without ``.py``; default: all).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in ("run_all.py", "__init__.py")
                     and not p.name.startswith("_"))
    if argv:
        wanted = set(argv)
        unknown = wanted - {p.stem for p in scripts}
        if unknown:
            print(f"bench: unknown benchmark(s) {', '.join(sorted(unknown))}; "
                  f"known: {', '.join(p.stem for p in scripts)}", file=sys.stderr)
            return 2
        scripts = [p for p in scripts if p.stem in wanted]
    failed = []
    for script in scripts:
        print(f"=== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
