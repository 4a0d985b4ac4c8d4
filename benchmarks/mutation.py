"""Mutation testing of the core modules with mutmut; per-module kill rates into benchmarks/results/mutation.md.

    make mutation                      # = python benchmarks/mutation.py (installs mutmut into .venv first)
    python benchmarks/mutation.py --report-only   # re-read mutants/ without running

The modules and their fast tests are `[tool.mutmut]` in pyproject.toml. mutmut maps each mutated function
to the tests that call it and runs only those per mutant; a run resumes where it stopped. Mutants that
cannot change behaviour are listed with a reason in benchmarks/mutation_equivalent.txt (one "name: reason"
per line) and leave the denominator. Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = Path(__file__).resolve().parent / "mutation_equivalent.txt"
MUTMUT = [str(Path(sys.executable).parent / "mutmut")]


def module_of(mutant: str) -> str:
    """osrkit.metrics.x_auroc__mutmut_1 → osrkit.metrics; osrkit.scores.cac.xǁCACScoreǁfit__mutmut_3 → osrkit.scores.cac."""
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def equivalents() -> dict[str, str]:
    if not EQUIVALENT.exists():
        return {}
    out = {}
    for line in EQUIVALENT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(":")
            out[name.strip()] = reason.strip()
    return out


def collect() -> dict[str, list[tuple[str, str]]]:
    r = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True)
    by_module: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for line in r.stdout.splitlines():
        if ":" in line:
            name, status = (s.strip() for s in line.rsplit(":", 1))
            by_module[module_of(name)].append((name, status))
    return by_module


def render(by_module, eq: dict[str, str], seconds: float | None, h: dict) -> tuple[str, dict]:
    rows, payload = [], {}
    for mod in sorted(by_module):
        c = Counter(status for _, status in by_module[mod])
        equiv = [n for n, s in by_module[mod] if s != "killed" and n in eq]
        killed = c["killed"] + c["timeout"]
        total = sum(c.values())
        scored = total - len(equiv) - c["skipped"] - c["not checked"]
        survivors = [n for n, s in by_module[mod] if s in ("survived", "no tests") and n not in eq]
        rate = killed / scored if scored else float("nan")
        payload[mod] = {"generated": total, "killed": killed, "survived": len(survivors), "equivalent": len(equiv),
                        "no_tests": c["no tests"], "not_checked": c["not checked"], "kill_rate": rate,
                        "survivors": survivors}
        rows.append(f"| `{mod}` | {total} | {killed} | {len(survivors)} | {len(equiv)} | {c['not checked']} | "
                    f"{rate:.1%} |")
    md = ["# Mutation testing (mutmut) of the core modules", "",
          "| module | mutants | killed | survived | equivalent | not checked | kill rate (of non-equivalent, checked) |",
          "|---|---|---|---|---|---|---|", *rows, ""]
    if seconds is not None:
        md.append(f"Run time: {seconds / 60:.1f} min on this machine (mutmut, 2 workers).")
    md += ["", "Survivors (each either needs a test or is listed in `benchmarks/mutation_equivalent.txt` with a reason):", ""]
    for mod, p in payload.items():
        if p["survivors"]:
            md.append(f"- `{mod}`: " + ", ".join(f"`{s.split('.')[-1]}`" for s in p["survivors"][:40])
                      + (" ..." if len(p["survivors"]) > 40 else ""))
    md += ["", f"Command: `{h['command']}`; date {h['date']}; {h['machine']['platform']}, "
           f"{h['machine']['cpu_count']} cores; commit {h['git_commit']}."]
    return "\n".join(md) + "\n", payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--max-children", type=int, default=2)
    args = ap.parse_args()
    seconds = None
    if not args.report_only:
        t0 = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        subprocess.run([*MUTMUT, "run", "--max-children", str(args.max_children)], cwd=ROOT, env=env)
        seconds = time.perf_counter() - t0
    h = header()
    md, payload = render(collect(), equivalents(), seconds, h)
    write("mutation", h | {"seconds": seconds, "modules": payload}, md)
    print(md)


if __name__ == "__main__":
    main()
