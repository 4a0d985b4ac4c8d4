"""m-OvR against softmax (MSP) and MLS per split and seed, read from an `osrkit bench` grid's stored runs.

    python benchmarks/movr_seeds.py --config benchmarks/grid_mnist_movr_seeds.yaml --name movr_mnist_seeds

Each (split, seed) pairs the three runs of one training seed: the softmax network scored by MSP and by MLS, and
the m-OvR network scored by its default reading (the AUROC/OSCR the grid stored; nothing is re-scored or
retrained here). Prints and writes benchmarks/results/<name>.{json,md}: the per-run table, the means, and the
paired differences m-OvR - MSP and m-OvR - MLS with a 95% t interval over the pairs, so a gap can be told from
seed and split noise. Runs the grid does not hold yet are listed as pending (run `osrkit bench --config` first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, issue11_bar, provenance, write  # noqa: E402

from osrkit.results.grid import GridConfig, grid_kwargs  # noqa: E402
from osrkit.results.plan import RunSpec  # noqa: E402
from osrkit.results.store import open_store  # noqa: E402

COLUMNS = ("softmax", "mls", "movr")  # softmax = MSP on the cross-entropy network; mls scores the same network


def collect(specs: list[RunSpec], store) -> tuple[dict[tuple[int, int], dict[str, dict]], list[str]]:
    """{(split, seed): {method: metrics}} for every stored run of the grid's three methods, and the pending labels."""
    runs: dict[tuple[int, int], dict[str, dict]] = {}
    pending = []
    for spec in specs:
        if spec.method not in COLUMNS:
            continue
        rows = store.rows(key=spec.key)
        if not rows:
            pending.append(spec.label)
            continue
        runs.setdefault((spec.split, spec.seed), {})[spec.method] = rows[0]["metrics"]
    return runs, pending


def paired(diff: np.ndarray) -> dict[str, float | None]:
    """Mean of paired differences with its 95% t interval (low and high None with one pair: no interval)."""
    n, mean = len(diff), float(diff.mean())
    half = float(stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / np.sqrt(n)) if n > 1 else None
    return {"mean": mean, "low": None if half is None else mean - half, "high": None if half is None else mean + half,
            "n": n, "wins": int((diff > 0).sum())}


def interval_text(d: dict) -> str:
    """A `paired` result's interval as 'low … high', or 'one pair: no interval'."""
    return "one pair: no interval" if d["low"] is None else f"{d['low']:+.4f} … {d['high']:+.4f}"


def summarize(runs: dict[tuple[int, int], dict[str, dict]], margin: float) -> dict:
    """Means and paired differences over the (split, seed) cells that hold all three runs."""
    full = sorted(k for k, v in runs.items() if all(m in v for m in COLUMNS))
    auroc = {m: np.array([runs[k][m]["auroc"] for k in full]) for m in COLUMNS}
    means = {m: float(a.mean()) for m, a in auroc.items()} if full else {}
    out = {"cells": [list(k) for k in full], "means": means,
           "oscr_means": {m: float(np.mean([runs[k][m]["oscr"] for k in full])) for m in COLUMNS} if full else {}}
    if full:
        out["movr_minus_msp"] = paired(auroc["movr"] - auroc["softmax"])
        out["movr_minus_mls"] = paired(auroc["movr"] - auroc["mls"])
        out["acceptance"] = {"movr_vs_softmax": means["movr"] >= means["softmax"] + margin,
                             "movr_vs_mls": means["movr"] >= means["mls"], "margin": margin}
    return out


def render(res: dict) -> str:
    s = res["summary"]
    lines = [f"# m-OvR vs softmax per split and seed: {res['grid']}", "",
             f"Every run from `{res['db']}` (the grid's stored AUROC/OSCR; m-OvR by its default score "
             f"`{res['movr_score']}`, softmax by MSP, MLS on the same softmax network).", "",
             "| split | seed | softmax MSP | MLS | m-OvR | m-OvR − MSP | m-OvR − MLS |", "|---|---|---|---|---|---|---|"]
    for split, seed, cell in res["rows"]:
        get = lambda m: cell.get(m, {}).get("auroc")  # noqa: E731
        vals = [get(m) for m in COLUMNS]
        txt = [f"{v:.4f}" if v is not None else "pending" for v in vals]
        d = [f"{vals[2] - vals[i]:+.4f}" if None not in (vals[2], vals[i]) else "" for i in (0, 1)]
        lines.append(f"| {split} | {seed} | " + " | ".join(txt + d) + " |")
    if s.get("means"):
        m, o = s["means"], s["oscr_means"]
        lines += ["", f"Means over {len(s['cells'])} (split, seed) cells: AUROC softmax MSP {m['softmax']:.4f}, "
                  f"MLS {m['mls']:.4f}, m-OvR {m['movr']:.4f}; OSCR {o['softmax']:.4f}, {o['mls']:.4f}, "
                  f"{o['movr']:.4f}.", ""]
        for name, key in (("MSP", "movr_minus_msp"), ("MLS", "movr_minus_mls")):
            p = s[key]
            interval = ("95% t interval " if p["low"] is not None else "") + interval_text(p)
            lines.append(f"- m-OvR − {name}: {p['mean']:+.4f} ({interval}, n = {p['n']}); "
                         f"m-OvR higher in {p['wins']} of {p['n']}.")
        a = s["acceptance"]
        family = res.get("family", "neal")
        what = (f"Acceptance (issue 11, point {res.get('point', 1)}) on these cells" if family == "neal" else
                f"The bar of issue 11, point {res.get('point', 1)}, on these `{family}` cells (a tuning protocol, "
                "not the issue's acceptance)")
        lines += ["", f"{what}: m-OvR ≥ MSP + {a['margin']}: "
                  f"**{'yes' if a['movr_vs_softmax'] else 'no'}**; m-OvR ≥ MLS: **{'yes' if a['movr_vs_mls'] else 'no'}**."]
    if res["pending"]:
        lines += ["", f"Pending (not in the database yet): {', '.join(res['pending'])}."]
    lines += ["", provenance(res), ""]
    for note in res.get("notes", []):
        lines += [note, ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the `osrkit bench` YAML grid (methods softmax, mls, movr)")
    ap.add_argument("--name", required=True, help="results/<name>.{json,md}")
    ap.add_argument("--margin", type=float, help="the bar over MSP (default the issue's: MNIST 0.005, CIFAR-10 0.01)")
    ap.add_argument("--note", action="append", default=[], help="a paragraph to keep under the table (saved in the "
                                                                 "JSON), e.g. the decision rule the grid was run for")
    args = ap.parse_args()
    kw = grid_kwargs({}, args.config)
    missing = [m for m in COLUMNS if m not in kw.get("methods", [])]
    if missing:
        raise SystemExit(f"{args.config}: the grid lacks method(s) {', '.join(missing)}; it needs softmax, mls, movr")
    point, bar = issue11_bar(kw["tasks"][0])
    grid = GridConfig.from_mapping(kw)
    store = open_store(grid.db, create=False)
    specs = grid.plan()
    runs, pending = collect(specs, store)
    movr_spec = next(s for s in specs if s.method == "movr")
    res = header() | {"grid": args.config, "db": str(grid.db), "movr_score": movr_spec.config["method_params"]["score"],
                      "rows": [[k[0], k[1], runs[k]] for k in sorted(runs)], "pending": pending,
                      "point": point, "family": grid.family, "notes": args.note,
                      "summary": summarize(runs, bar if args.margin is None else args.margin)}
    text = render(res)
    write(args.name, res, text)
    print(text)


if __name__ == "__main__":
    main()
