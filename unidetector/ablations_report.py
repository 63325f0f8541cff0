"""``ablations.json`` → ``ablations.md`` and its matplotlib figures for ``unidet experiment --ablations``: the claims
table (each claim, the paper's direction, the measured difference with its bootstrap interval, a verdict), the
proposal, stage-2 and calibration sections, and figures (AR by class group, AP by frequency, APr/APf against γ)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .experiment_report import _with_interval

__all__ = ["verdict", "claim_rows", "claims_table", "write_ablation_report", "proposal_figure",
           "calibration_figure", "seed_spread", "spread_table", "write_seed_spread"]

AP_METRICS = ("AP", "APr", "APc", "APf")
AR_METRICS = ("AR@100", "AR@300", "seen_AR@100", "seen_AR@300", "novel_AR@100", "novel_AR@300")
HOLDS, FAILS, INCONCLUSIVE, UNDEFINED = "holds", "does not hold", "inconclusive", "undefined"


def verdict(diff: dict, direction: int = 1) -> str:
    """A claim that ``b - a`` has the sign ``direction`` (+1 / -1), judged by the difference's interval
    ``{"low", "high"}``: ``holds`` when it lies on that side of 0, ``does not hold`` when it lies on the other,
    ``inconclusive`` when it contains 0, ``undefined`` when it is not finite."""
    lo, hi = diff["low"] * direction, diff["high"] * direction
    lo, hi = min(lo, hi), max(lo, hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return UNDEFINED
    return HOLDS if lo > 0 else FAILS if hi < 0 else INCONCLUSIVE


def claim_rows(ablations: dict) -> list:
    """The claims of the paper, each with its measured difference: a list of ``{claim, comparison, metric,
    paper, difference: {value, low, high}, verdict}`` (differences in [0, 1] units; those not measured are left
    out)."""
    runs = ablations.get("runs", {})
    single = next((n for n in runs if n.startswith("single_")), None)
    cal = ablations.get("calibration") or {}
    gamma = cal.get("config_gamma")
    specs = [
        ("1. Decoupled class-agnostic proposals generalise", "proposal_recall", "CLN - RPN",
         "CLN proposals vs classification-based (RPN) proposals, never-labelled classes",
         ("novel_AR@100", "novel_AR@300"), "higher with CLN"),
        ("1. Decoupled class-agnostic proposals generalise", "bootstrap", "partitioned - rpn_proposals",
         "stage 2 on CLN vs on RPN proposals", ("AP", "APr"), "higher with CLN proposals"),
        ("2. Partitioned multi-dataset training is best", "bootstrap", f"partitioned - {single}",
         f"partitioned heads vs one dataset only ({single[len('single_'):] if single else '?'})", ("AP", "APr"),
         "higher with partitioned heads"),
        ("2. Partitioned multi-dataset training is best", "bootstrap", "partitioned - unified",
         "partitioned heads vs one unified label space", ("AP", "APr"), "higher with partitioned heads"),
    ]
    if gamma is not None:
        for prior, what in (("raw_results", "prior from the raw test results"),
                            ("train_freq", "prior from training frequencies")):
            specs.append(("3. Probability calibration lifts rare classes", "bootstrap",
                          f"calibrated_{prior}_g{gamma:g} - partitioned", f"calibrated ({what}, γ = {gamma:g}) vs raw",
                          ("APr",), "higher when calibrated"))
    rows = []
    for claim, source, key, comparison, metrics, paper in specs:
        diffs = (ablations.get(source) or {}).get("differences", {}).get(key)
        for m in metrics:
            if diffs and m in diffs:
                rows.append(dict(claim=claim, comparison=comparison, metric=m, paper=paper, difference=diffs[m],
                                 verdict=verdict(diffs[m])))
    return rows


def claims_table(rows: list, level: str) -> list:
    lines = [f"| claim | comparison | metric | paper's direction | measured difference (points, {level} interval) "
             "| verdict |", "|---|---|---|---|---|---|"]
    for r in rows:
        d = r["difference"]
        lines.append(f"| {r['claim']} | {r['comparison']} | {r['metric']} | {r['paper']} | "
                     f"{_with_interval(d['value'], d['low'], d['high'], signed=True)} | **{r['verdict']}** |")
    return lines


def _metric_table(boot: dict, names, metrics, header: str) -> list:
    """Rows ``name | value [interval] ...`` of the runs ``names`` of a bootstrap result."""
    lines = [f"| {header} | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name in names:
        vals, iv = boot["runs"][name], boot["intervals"][name]
        lines.append(f"| {name} | " + " | ".join(_with_interval(vals[m], *iv[m]) for m in metrics) + " |")
    return lines


def _difference_table(boot: dict, keys, metrics) -> list:
    lines = ["| difference | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for key in keys:
        d = boot["differences"][key]
        lines.append(f"| {key.replace(' - ', ' − ')} | " + " | ".join(
            _with_interval(d[m]["value"], d[m]["low"], d[m]["high"], signed=True) for m in metrics) + " |")
    return lines


def proposal_figure(recall: dict, out_path):
    """AR@100 / AR@300 of each proposal set by class group (all, seen, novel), bars with bootstrap intervals."""
    from .visualize import ap_by_frequency_figure

    metrics = [m for m in AR_METRICS if all(m in v for v in recall["runs"].values())]
    fig = ap_by_frequency_figure(recall["runs"], recall["intervals"], out_path, metrics=metrics,
                                 title="Proposal recall on the test set by class group\n"
                                       "error bars: 95 % bootstrap intervals over test images")
    ax = fig.axes[0]
    ax.set_ylabel("AR (%)")
    ax.set_xticks(range(len(metrics)), [(m.split("_")[0] if "_" in m else "all") + "\n" + m.split("_")[-1]
                                        for m in metrics])
    ax.get_legend().set_bbox_to_anchor((0.5, -0.15))  # below the two-line tick labels
    fig.savefig(out_path)
    return fig


def calibration_figure(boot: dict, calibration: dict, out_path, reference: str = "partitioned"):
    """Calibrated minus raw APr and APf (points) against γ for each prior, with the paired bootstrap intervals of
    the differences as bands (the runs themselves nearly coincide: their own intervals would hide the change)."""
    from .visualize import _palette, new_figure, round_ticks

    gammas = calibration["gammas"]
    fig = new_figure(9.0, 3.8)
    axes = fig.subplots(1, 2)
    colours = _palette(len(calibration["priors"]))
    for ax, metric in zip(axes, ("APr", "APf")):
        ax.axhline(0.0, color="0.3", lw=1.0)
        for c, prior in enumerate(calibration["priors"]):
            diffs = [boot["differences"][f"calibrated_{prior}_g{g:g} - {reference}"][metric] for g in gammas]
            y = 100 * np.array([d["value"] for d in diffs])
            lo, hi = (100 * np.array([d[k] for d in diffs]) for k in ("low", "high"))
            ax.plot(gammas, y, "o-", color=colours[c], label=f"prior: {prior.replace('_', ' ')}")
            ax.fill_between(gammas, lo, hi, color=colours[c], alpha=0.18, lw=0)
        ax.set_xticks(gammas)
        ax.set_xlabel("γ (calibration exponent)")
        ax.set_ylabel(f"{metric}: calibrated − raw (points)")
        ax.set_title(metric, fontsize=10)
        round_ticks(ax.yaxis)
        ax.grid(color="0.9")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False, fontsize=8)
    fig.suptitle("Calibration of the partitioned model, same regions re-scored (bands: paired 95 % bootstrap "
                 "intervals)", fontsize=10)
    fig.savefig(out_path)
    return fig


def write_ablation_report(report: dict, out_dir, log=print) -> list:
    """``ablations.md`` and the figures in ``out_dir`` from the ablation plan's ``report``; returns the claim rows."""
    from .visualize import ap_by_frequency_figure

    out_dir = Path(out_dir)
    abl = report["ablations"]
    boot, recall, cal = abl.get("bootstrap"), abl.get("proposal_recall"), abl.get("calibration") or {}
    level = f"{100 * (boot or recall or {}).get('level', 0.95):g} %"
    rows = claim_rows(abl)
    abl["claims"] = rows
    world = report.get("world", {})
    lines = [f"# The paper's claims on the synthetic open world ({report['mode']} plan, seed {report['seed']})", "",
             f"World: {world.get('classes', '?')} classes, training sets "
             + ", ".join(f"{k} ({v} classes)" for k, v in world.get("label_spaces", {}).items())
             + f", {len(world.get('novel_classes', []))} classes never labelled (novel), "
             f"{world.get('val_images', '?')} test images. Every variant: same world, world-CLIP, recipe, "
             "iterations and seed; only the compared component differs. Differences are in points (AP or AR in %), "
             f"with paired {level} bootstrap intervals over test images "
             f"({(boot or recall or {}).get('n_boot', '?')} resamples). A verdict is *inconclusive* when the "
             "interval contains 0. One seed: the intervals cover the test images' sampling, not training noise.", "",
             "## Claims", ""] + claims_table(rows, level) + [""]
    figures = []
    if recall:
        proposal_figure(recall, out_dir / "ablation_proposals.png")
        figures.append(("ablation_proposals.png", "proposal recall by class group"))
        metrics = [m for m in AR_METRICS if m in next(iter(recall["runs"].values()))]
        lines += ["## 1. Proposals: CLN vs classification-based RPN (test set, AR in %)", "",
                  "RPN: `configs/synthetic/ablations/stage1_rpn.py` (mmdet RPN objectness classified against "
                  "anchors, a fg/bg box head without localisation quality; unlabelled objects are background). "
                  "Same backbone, anchors, data, iterations and seed as the CLN.", ""]
        lines += _metric_table(recall, list(recall["runs"]), metrics, "proposals") + [""]
        lines += _difference_table(recall, list(recall["differences"]), metrics) + [""]
    if boot:
        variants = [n for n, r in abl["runs"].items() if not r.get("calibration")]
        ap_by_frequency_figure({n: boot["runs"][n] for n in variants}, {n: boot["intervals"][n] for n in variants},
                               out_dir / "ablation_stage2.png", metrics=AP_METRICS,
                               title="Stage-2 variants: LVIS-style AP by class frequency (r includes every novel "
                                     f"class)\nerror bars: {level} bootstrap intervals over test images")
        figures.append(("ablation_stage2.png", "AP by frequency of the stage-2 variants"))
        lines += ["## 1–2. Stage-2 variants (open-world test set, all classes; AP in %)", "",
                  "| run | proposals | training | iterations |", "|---|---|---|---|"]
        budget = abl.get("variants", {})
        iters = {"rpn_proposals": "stage2_rpn", "unified": "stage2_unified"}
        reference = next((v["reference_iterations"] for k, v in budget.items() if k.startswith("stage2_")), "?")
        for n in variants:
            info = budget.get(iters.get(n, "stage2_single" if n.startswith("single_") else ""), {})
            it = info.get("iterations", reference)
            lines.append(f"| {n} | {abl['runs'][n]['proposals']} | {abl['runs'][n]['training']} | {it} |")
        lines += [""] + _metric_table(boot, variants, AP_METRICS, "run") + [""]
        lines += ["Brackets after a run: percentile intervals of the resampled AP. With one or two test objects for "
                  "most classes, resampled AP is biased upwards (a resample duplicates some images and drops the "
                  "classes whose objects it misses), so these intervals can lie above the full-set value; the "
                  "verdicts use the paired differences below, where both runs see the same resamples.", ""]
        keys = [k for k in boot["differences"] if not k.startswith("calibrated_")]
        lines += _difference_table(boot, keys, AP_METRICS) + [""]
        calibrated = [n for n, r in abl["runs"].items() if r.get("calibration")]
        if calibrated and cal:
            calibration_figure(boot, cal, out_dir / "ablation_calibration.png")
            figures.append(("ablation_calibration.png", "calibrated minus raw APr and APf against gamma"))
            lines += ["## 3. Calibration of the partitioned model (same regions re-scored; AP in %)", "",
                      "`p_c ← p_c · π_c^−γ / mean(π^−γ)` before the fusion with the proposal score; "
                      "π: detections "
                      "per class in the raw test results (official, transductive) or training image counts, both "
                      f"+ {cal.get('smoothing', '?')}. γ swept over {', '.join(f'{g:g}' for g in cal['gammas'])} "
                      f"(the configs' γ: {cal.get('config_gamma')}); reported, not chosen.", ""]
            lines += _metric_table(boot, ["partitioned"] + calibrated, AP_METRICS, "run") + [""]
            lines += _difference_table(boot, [k for k in boot["differences"] if k.startswith("calibrated_")],
                                       AP_METRICS) + [""]
    timings = report.get("timings", {})
    lines += ["## Timings (s)", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in timings.items() if k != "total"]
    lines += [f"| total (steps run) | {round(sum(v for k, v in timings.items() if k != 'total'), 1)} |", ""]
    lines += [f"![{alt}]({f})" for f, alt in figures]
    (out_dir / "ablations.md").write_text("\n".join(lines) + "\n")
    (out_dir / "ablations.json").write_text(json.dumps(report, indent=2))
    log("\n" + "\n".join(claims_table(rows, level)))
    return rows


def seed_spread(claims_by_seed: dict) -> list:
    """The claims measured with several seeds: ``claims_by_seed`` maps a seed to its :func:`claim_rows`. Returns
    one row per (claim, comparison, metric) found in every seed: the row's fields, ``values`` (the difference per
    seed, in [0, 1] units), their ``mean`` and sample standard deviation ``sd`` (0 for one seed), and ``verdicts``
    (each seed's bootstrap verdict)."""
    seeds = list(claims_by_seed)
    keyed = [{(r["claim"], r["comparison"], r["metric"]): r for r in claims_by_seed[s]} for s in seeds]
    rows = []
    for key, first in keyed[0].items() if keyed else ():
        if not all(key in k for k in keyed):
            continue
        values = np.array([k[key]["difference"]["value"] for k in keyed], dtype=np.float64)
        rows.append(dict(claim=first["claim"], comparison=first["comparison"], metric=first["metric"],
                         paper=first["paper"], values=dict(zip(seeds, values.tolist())), mean=float(values.mean()),
                         sd=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                         verdicts={s: k[key]["verdict"] for s, k in zip(seeds, keyed)}))
    return rows


def spread_table(rows: list) -> list:
    """Markdown rows of :func:`seed_spread`: the difference per seed and its mean ± sd in points, and how many
    seeds' bootstrap verdicts say the claim holds."""
    seeds = list(rows[0]["values"]) if rows else []
    lines = ["| claim | comparison | metric | paper's direction | " + " | ".join(f"seed {s}" for s in seeds)
             + " | mean ± sd (points) | seeds where it holds |", "|---|---|---|---|" + "---|" * (len(seeds) + 2)]
    for r in rows:
        holds = sum(v == HOLDS for v in r["verdicts"].values())
        lines.append(f"| {r['claim']} | {r['comparison']} | {r['metric']} | {r['paper']} | "
                     + " | ".join(f"{100 * v:+.1f}" for v in r["values"].values())
                     + f" | {100 * r['mean']:+.1f} ± {100 * r['sd']:.1f} | {holds} of {len(r['verdicts'])} |")
    return lines


def write_seed_spread(reports: dict, out_dir, log=print) -> list:
    """``spread.md`` and ``spread.json`` in ``out_dir`` from the ablation reports of several seeds (``{seed:
    ablations.json content}``); returns the :func:`seed_spread` rows."""
    out_dir = Path(out_dir)
    rows = seed_spread({s: r["ablations"].get("claims") or claim_rows(r["ablations"]) for s, r in reports.items()})
    first = next(iter(reports.values()))
    timings = {s: r.get("timings", {}).get("total") for s, r in reports.items()}
    lines = [f"# The paper's claims over {len(reports)} seeds ({first['mode']} plan)", "",
             "Each seed draws its own world (images, label spaces, novel classes), world-CLIP and training; the "
             "recipe is the same. Per seed: the measured difference in points (AP or AR in %); mean ± sample "
             "standard deviation over the seeds; and in how many seeds the paired bootstrap interval over that "
             "seed's test images lies on the paper's side of 0 (`ablations.md` in each seed's folder).", ""]
    lines += spread_table(rows) + ["", "Seconds per seed (steps run): "
                                   + ", ".join(f"seed {s}: {t}" for s, t in timings.items()), ""]
    (out_dir / "spread.md").write_text("\n".join(lines) + "\n")
    (out_dir / "spread.json").write_text(json.dumps({"seeds": list(reports), "rows": rows}, indent=2))
    log("\n" + "\n".join(spread_table(rows)))
    return rows
