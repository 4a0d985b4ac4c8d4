"""Mutation testing of the core modules with mutmut; per-module kill rates into benchmarks/results/mutation.md.

    make mutation                          # = python benchmarks/mutation.py (installs mutmut into .venv first)
    python benchmarks/mutation.py --report-only                  # re-read mutants/ without running
    python benchmarks/mutation.py --report-only --from D1,D2     # merge runs made in several clones (each with
                                                                 # `only_mutate` restricted to some modules)
    python benchmarks/mutation.py --hand-only                    # only the issue's three hand mutations

The modules and their fast tests are `[tool.mutmut]` in pyproject.toml. mutmut maps each mutated function
to the tests that call it and runs only those per mutant; a run resumes where it stopped. Mutants that
cannot change behaviour are listed with a reason in benchmarks/mutation_equivalent.txt (one "name: reason"
per line) and leave the denominator. The three hand mutations of the issue are applied one at a time in a
temporary clone, each followed by its test file. Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = Path(__file__).resolve().parent / "mutation_equivalent.txt"
MUTMUT = [str(Path(sys.executable).parent / "mutmut")]

# the hand mutations that once survived the suite: (name, file, old text, new text, test file)
HAND = [
    ("predict without model.eval()", "src/osrkit/engine/predict.py", "    model.eval()\n", "", "tests/test_engine.py"),
    ("fpr_at_tpr at TPR 0.90 whatever is asked", "src/osrkit/metrics.py", "np.searchsorted(tpr_curve, tpr - 1e-12",
     "np.searchsorted(tpr_curve, 0.90 - 1e-12", "tests/test_metrics.py"),
    ("energy score with its sign flipped", "src/osrkit/scores/softmax.py",
     "ScoreResult(-self.temperature * torch.logsumexp", "ScoreResult(self.temperature * torch.logsumexp",
     "tests/test_ovr.py"),
]


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


def collect(folder: Path = ROOT) -> dict[str, list[tuple[str, str]]]:
    r = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=folder, capture_output=True, text=True, check=True)
    by_module: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for line in r.stdout.splitlines():
        if ":" in line:
            name, status = (s.strip() for s in line.rsplit(":", 1))
            by_module[module_of(name)].append((name, status))
    return by_module


def merge(folders: list[Path]) -> tuple[dict[str, list[tuple[str, str]]], dict[str, str]]:
    """Each module from the folder that checked most of its mutants (a clone restricted to it)."""
    best: dict[str, tuple[int, list, str]] = {}
    for f in folders:
        for mod, items in collect(f).items():
            checked = sum(s != "not checked" for _, s in items)
            if checked and (mod not in best or checked > best[mod][0]):
                best[mod] = (checked, items, str(f))
    return {m: v[1] for m, v in best.items()}, {m: v[2] for m, v in best.items()}


def hand_mutations() -> list[dict[str, str]]:
    """Apply each hand mutation in a temporary clone and run its test file there: caught or survived."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {**os.environ, "PYTHONPATH": str(clone / "src"), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
               "OSRKIT_SHARED": os.environ.get("OSRKIT_SHARED", str(ROOT.parent / "shared"))}
        for name, rel, old, new, test in HAND:
            subprocess.run(["git", "checkout", "-q", "--", "src"], cwd=clone, check=True)
            path = clone / rel
            text = path.read_text()
            assert text.count(old) == 1, f"{rel}: the hand mutation's line changed; update HAND"
            path.write_text(text.replace(old, new))
            r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:warnings", test], cwd=clone,
                               env=env, capture_output=True, text=True)
            failed = [ln.split(" - ")[0] for ln in r.stdout.splitlines() if ln.startswith("FAILED")]
            out.append({"mutation": name, "file": rel, "caught": r.returncode != 0,
                        "by": failed[0].removeprefix("FAILED ") if failed else ""})
    return out


def render(by_module, eq: dict[str, str], seconds: float | None, h: dict, sources: dict[str, str] | None,
           hand: list[dict] | None) -> tuple[str, dict]:
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
                        "survivors": survivors, "source": (sources or {}).get(mod)}
        rows.append(f"| `{mod}` | {total} | {killed} | {len(survivors)} | {len(equiv)} | {c['not checked']} | "
                    f"{rate:.1%} |")
    md = ["# Mutation testing (mutmut) of the core modules", "",
          "| module | mutants | killed | survived | equivalent | not checked | kill rate (of non-equivalent, checked) |",
          "|---|---|---|---|---|---|---|", *rows, ""]
    if seconds is not None:
        md.append(f"Run time: {seconds / 60:.1f} min on this machine (mutmut, 2 workers).")
    if hand is not None:
        md += ["", "## The issue's hand mutations", "", "| mutation | file | suite | first failing test |", "|---|---|---|---|"]
        md += [f"| {x['mutation']} | `{x['file']}` | {'caught' if x['caught'] else '**survived**'} | `{x['by']}` |"
               for x in hand]
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
    ap.add_argument("--hand-only", action="store_true")
    ap.add_argument("--from", dest="sources", help="comma-separated mutmut working folders to merge (default: here)")
    ap.add_argument("--max-children", type=int, default=2)
    args = ap.parse_args()
    hand = hand_mutations()
    for x in hand:
        print(f"{x['mutation']}: {'caught by ' + x['by'] if x['caught'] else 'SURVIVED'}", flush=True)
    if args.hand_only:
        return
    seconds = None
    if not args.report_only:
        t0 = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        subprocess.run([*MUTMUT, "run", "--max-children", str(args.max_children)], cwd=ROOT, env=env)
        seconds = time.perf_counter() - t0
    h = header()
    if args.sources:
        by_module, sources = merge([Path(p) for p in args.sources.split(",")])
    else:
        by_module, sources = collect(), None
    md, payload = render(by_module, equivalents(), seconds, h, sources, hand)
    write("mutation", h | {"seconds": seconds, "modules": payload, "hand_mutations": hand}, md)
    print(md)


if __name__ == "__main__":
    main()
