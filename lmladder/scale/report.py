"""What `lmladder scale --out DIR` writes (format lmladder-scale):

    lmladder.json   the header: the manifest (corpus, split, metric, device, versions, date)
    results.json    the plan (family, recipe and its rule, budgets), every run, both fits with
                    bootstrap intervals, the prediction (prediction.bits_per_char, .interval), the
                    verification (verification.bits_per_char, .relative_error = (predicted -
                    actual) / actual), compute_ratio (the target's training FLOPs over the sum of
                    the finished fit runs') and, on a synthetic corpus, the truth (its entropy
                    rate against each fitted E)
    runs.parquet    one row a run (lmladder.schemas.SCALE_RUNS), the fit runs and the target
    scale.md        the same for a person
    compute.png     loss against training compute: the runs, the frontier, the fitted L(C), the
                    prediction with its interval and the verified point
    isoflop.png     IsoFLOP curves: loss against parameters at each budget, with the fitted L(N, D)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lmladder import schemas


def _f(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) >= 1e5 or abs(value) < 1e-2 else f"{value:.{digits}f}"
    return f"{value:,}"


def _with_interval(value: float, interval: list[float] | None, digits: int = 4) -> str:
    return _f(value, digits) + (f" [{_f(interval[0], digits)}, {_f(interval[1], digits)}]" if interval else "")


def edge_notes(edges: dict[str, list[float]]) -> list[str]:
    """A note for the budgets whose IsoFLOP minimum is at the grid's edge (fit.isoflop_edges)."""
    out = []
    for side, fix in (("smallest", "smaller depths"), ("largest", "larger depths")):
        if edges.get(side):
            out.append(f"- note: at {', '.join(f'{b:.3g}' for b in edges[side])} FLOPs the best run is the grid's "
                       f"{side} model: the compute-optimal size lies outside the sweep there (add {fix}, or move "
                       "the budgets), so the fits extrapolate from one side of each IsoFLOP minimum")
    return out


def isoflop_lines(isoflop: dict[str, Any] | None) -> list[str]:
    """Approach 2 (fit.isoflop_minima, fit.optimal_size_law) in a line or two."""
    if not isoflop or not isoflop["minima"]:
        return []
    at = "; ".join(f"{m['budget']:.3g}: " + (f"N = {m['params']:,.0f}" if m["params"] is not None else "none inside")
                   for m in isoflop["minima"])
    law = isoflop["law"]
    return [f"- IsoFLOP minima (approach 2: a parabola in log N at each budget of 3+ runs), N_opt by budget: {at}"
            + (f"; N_opt = {law['k']:.3g} C^{law['a']:.3f} through them" if law else
               "; fewer than two inside the runs, so no N_opt(C) law")]


def markdown(report: dict[str, Any]) -> str:
    m, plan, fits = report["manifest"], report["plan"], report["fits"]
    metric = fits["metric"]
    lines = [f"# Scaling study on `{m['corpus']['name']}` ({metric} bits/char)", "",
             f"Split {m['split']}; {m['device']}; lmladder {m['lmladder_version']}, torch {m['torch']}; {m['date']}.", "",
             f"Family: depth k has k layers, width {plan['family']['aspect']} k, heads of {plan['family']['head_size']}, "
             f"context {plan['family']['block_size']}, vocabulary {plan['vocab_size']} (padded).",
             f"Recipe: {plan['recipe']['rule']}.", f"FLOPs: {plan['flops_formula']} (N non-embedding parameters, d width, "
             "V vocabulary, L layers, T context).", "",
             "| run | role | layers | width | N (non-emb) | tokens | batch | steps | lr | FLOPs | val bpc | test bpc | "
             "train s | status |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['name']} | {r['role']} | {r['n_layer']} | {r['n_embd']} | {r['non_embedding_parameters']:,} | "
                     f"{r['tokens']:,} | {r['batch_size']} | {r['steps']:,} | {r['lr']:.4f} | {r['flops']:.3g} | "
                     f"{_f(r['val_bits_per_char'])} | {_f(r['test_bits_per_char'])} | {_f(r['train_seconds'], 1)} | "
                     f"{r['status']}{': ' + r['error'] if r.get('error') else ''} |")
    if plan["dropped"]:
        lines += ["", "Left out of the grid: " + "; ".join(f"{d['name']} ({d['why']})" for d in plan["dropped"]) + "."]
    c, d = fits["compute"], fits["data"]
    ci, di = c["interval"], d["interval"]
    b = fits["bootstrap"]
    lines += ["", f"## Fits ({fits['runs']} runs; 95% intervals from {b['resamples']} bootstrap resamples of the runs, "
                  f"of which L(C) fitted {b['fitted']['compute']} and L(N, D) {b['fitted']['data']})", "",
              f"- L(C) = E + A C^-alpha on the compute frontier ({', '.join(c['frontier'])}): "
              f"E = {_with_interval(c['E'], ci.get('E'))}, A = {_with_interval(c['A'], ci.get('A'))}, "
              f"alpha = {_with_interval(c['alpha'], ci.get('alpha'))}",
              f"- L(N, D) = E + A / N^alpha + B / D^beta: E = {_with_interval(d['E'], di.get('E'))}, "
              f"A = {_with_interval(d['A'], di.get('A'))}, alpha = {_with_interval(d['alpha'], di.get('alpha'))}, "
              f"B = {_with_interval(d['B'], di.get('B'))}, beta = {_with_interval(d['beta'], di.get('beta'))}"]
    for law, title in (("compute", "L(C)"), ("data", "L(N, D)")):
        if not fits.get("E_identified", {}).get(law, True):
            lines.append(f"- note: {title}'s E went to {fits[law]['E']:.3g}, far below every run's loss: these runs do "
                         "not pin down an irreducible loss, and its predictions rest on the power-law terms alone")
    for name in d.get("flat", []):
        variable = {"alpha": "model size N", "beta": "tokens D"}[name]
        lines.append(f"- note: {name} is {d[name]:.3g}: these runs cannot tell one {variable} from another (at this "
                     f"compute every run is limited by the other variable), so L(N, D) ignores {variable} and its "
                     "E is not an irreducible loss")
    lines += edge_notes(fits.get("isoflop_edges", {}))
    lines += isoflop_lines(fits.get("isoflop"))
    p, v = report["prediction"], report["verification"]
    if p is not None:
        t = p["target"]
        lines += ["", "## Prediction", "",
                  f"Target ({p['source']}): {t['n_layer']} layers x {t['n_embd']}, N = {t['non_embedding_parameters']:,}, "
                  f"D = {t['tokens']:,} tokens, C = {t['flops']:.3g} FLOPs: {report['compute_ratio']:.1f} x the "
                  f"{report['fit_flops']:.3g} FLOPs of all fit runs together.", "",
                  f"- L(N, D): **{_with_interval(p['bits_per_char'], p['interval'])}** bits/char",
                  f"- L(C): {_with_interval(p['by_compute']['bits_per_char'], p['by_compute']['interval'])} bits/char"]
        if p.get("optimal"):
            o = p["optimal"]
            lines.append(f"- compute-optimal in the family (by L(N, D)): depth {o['depth']}, N = {o['parameters']:,}, "
                         f"D = {o['tokens']:,}" + (f"; approach 2's N_opt(C) puts it at N = "
                                                   f"{o['approach2_parameters']:,.0f}"
                                                   if o.get("approach2_parameters") else ""))
        if p.get("warning"):
            lines.append(f"- note: {p['warning']}")
    if v is not None:
        if v["bits_per_char"] is None:
            lines += ["", f"Verification: the target run failed ({v['error']})."]
        else:
            inside = "inside" if v["within_interval"] else "outside"
            lines += ["", f"Verification: trained, the target scores **{v['bits_per_char']:.4f}** {metric} bits/char; "
                          f"L(N, D) was off by {v['relative_error']:+.2%} ({inside} its interval), L(C) by "
                          f"{v['by_compute_relative_error']:+.2%}."]
    if report.get("truth"):
        tr = report["truth"]
        lines += ["", f"Truth: the corpus's entropy rate is {tr['entropy_bits_per_char']:.4f} bits/char; fitted E: "
                      f"L(N, D) {tr['E_data']:.4f} ({tr['E_data_relative_error']:+.2%}), L(C) {tr['E_compute']:.4f} "
                      f"({tr['E_compute_relative_error']:+.2%})."]
    lines += ["", "![loss against compute](compute.png)", "", "![IsoFLOP curves](isoflop.png)"]
    return "\n".join(lines) + "\n"


def _metric_runs(report: dict[str, Any], role: str) -> list[dict[str, Any]]:
    key = f"{report['fits']['metric']}_bits_per_char"
    return [r for r in report["runs"] if r["role"] == role and r.get(key) is not None]


def plot_compute(report: dict[str, Any], path: Path) -> None:
    """Loss against compute: the fit runs by depth, the frontier, L(C), the prediction and the
    verified target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"{report['fits']['metric']}_bits_per_char"
    runs = _metric_runs(report, "fit")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, layers in enumerate(sorted({r["n_layer"] for r in runs})):
        mine = [r for r in runs if r["n_layer"] == layers]
        ax.scatter([r["flops"] for r in mine], [r[key] for r in mine], color=f"C{i}", s=22, zorder=3,
                   label=f"{layers} layer{'s' if layers > 1 else ''}, N={mine[0]['non_embedding_parameters']:,}")
    c = report["fits"]["compute"]
    front = [r for r in runs if r["name"] in c["frontier"]]
    ax.plot([r["flops"] for r in front], [r[key] for r in front], "o", mfc="none", mec="black", ms=10,
            label="compute frontier")
    p, v = report["prediction"], report["verification"]
    top = max([r["flops"] for r in runs] + ([p["target"]["flops"]] if p else []))
    xs = np.geomspace(min(r["flops"] for r in runs) / 1.5, top * 1.5, 200)
    ax.plot(xs, c["E"] + c["A"] * xs ** -c["alpha"], color="black", lw=1.2,
            label=f"L(C) = {c['E']:.3f} + {c['A']:.3g} C^-{c['alpha']:.3f}")
    ax.axhline(c["E"], color="black", lw=0.6, ls=":")
    if report.get("truth"):
        ax.axhline(report["truth"]["entropy_bits_per_char"], color="C3", lw=1, ls="--", label="true entropy rate")
    if p is not None:
        lo, hi = p["interval"] or (p["bits_per_char"], p["bits_per_char"])
        ax.errorbar([p["target"]["flops"]], [p["bits_per_char"]], yerr=[[p["bits_per_char"] - lo], [hi - p["bits_per_char"]]],
                    fmt="s", color="C3", capsize=4, label=f"predicted, L(N, D): {p['bits_per_char']:.3f}")
    if v is not None and v["bits_per_char"] is not None:
        ax.plot([p["target"]["flops"]], [v["bits_per_char"]], "*", color="gold", mec="black", ms=14,
                label=f"verified: {v['bits_per_char']:.3f} ({v['relative_error']:+.1%})")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(f"{report['fits']['metric']} bits per character")
    ax.set_title(f"{report['manifest']['corpus']['name']}: loss against compute")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_isoflop(report: dict[str, Any], path: Path) -> None:
    """Loss against non-embedding parameters at each budget, with L(N, D = C / FLOPs a token)
    over the family's continuous depth, and the minimum of each curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmladder.scale.plan import flops_per_token, non_embedding_params

    key = f"{report['fits']['metric']}_bits_per_char"
    runs = _metric_runs(report, "fit")
    fam, vocab, d = report["plan"]["family"], report["plan"]["vocab_size"], report["fits"]["data"]
    depths = np.linspace(min(r["n_layer"] for r in runs) * 0.6, max(r["n_layer"] for r in runs) * 1.6, 200)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, budget in enumerate(sorted({r["budget"] for r in runs})):
        mine = sorted((r for r in runs if r["budget"] == budget), key=lambda r: r["non_embedding_parameters"])
        ax.plot([r["non_embedding_parameters"] for r in mine], [r[key] for r in mine], "o", color=f"C{i}",
                label=f"C = {budget:.2g}")
        n = non_embedding_params(depths, fam["aspect"] * depths)
        tokens = budget / flops_per_token(depths, fam["aspect"] * depths, vocab, fam["block_size"])
        curve = d["E"] + d["A"] * n ** -d["alpha"] + d["B"] * tokens ** -d["beta"]
        ax.plot(n, curve, color=f"C{i}", lw=1)
        ax.plot(n[np.argmin(curve)], curve.min(), "x", color=f"C{i}", ms=9)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel(f"{report['fits']['metric']} bits per character")
    ax.set_title("IsoFLOP curves: runs and the fitted L(N, D) (x: its minimum)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: dict[str, Any], out: str | Path) -> None:
    """The folder above, built under a temporary name and renamed into place."""
    from lmladder import artifacts
    from lmladder.atomic import MARKER, atomic_dir, write_json, write_text

    with atomic_dir(out) as tmp:
        write_json(tmp / "results.json", report)
        write_text(tmp / "scale.md", markdown(report))
        m = report["manifest"]
        columns = schemas.SCALE_RUNS.names
        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in report["runs"]],
                                     schema=schemas.SCALE_RUNS)
        schemas.write_table(table, tmp / "runs.parquet", "scale_runs",
                            {"corpus": m["corpus"]["name"], "split": m["split"]})
        plot_compute(report, tmp / "compute.png")
        plot_isoflop(report, tmp / "isoflop.png")
        write_json(tmp / MARKER, artifacts.header("lmladder-scale", manifest=m))
