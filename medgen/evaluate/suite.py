"""The whole evaluation of a synthetic (and optionally an enhanced) set against real scans, as a report.

:func:`evaluate_sets` computes, on scans in memory:

- realism/diversity: FID and feature MMD on :mod:`~medgen.evaluate.features` vectors (the page says
  which network), MS-SSIM diversity (:mod:`medgen.evaluate.generation`), foreground
  intensity distance and tissue volumes (:mod:`medgen.evaluate.distributions`);
- QC: a patch flow fitted on the real scans (:func:`~medgen.evaluate.qc.fit_qc`) flags atypical
  synthetic/enhanced scans;
- privacy: :func:`~medgen.evaluate.privacy.memorisation_audit` of synthetic vs ``training`` (default:
  the real set);
- enhancement (when ``enhanced`` and their ``inputs`` are given): fidelity against same-named real
  scans (:mod:`medgen.evaluate.fidelity`) and the per-region hallucination check;
- downstream utility (when ``downstream`` image/label items are given): train-on-synthetic,
  test-on-real segmentation Dice next to the train-on-real baseline (:mod:`medgen.evaluate.downstream`).

:func:`write_evaluation_report` and :func:`write_run_report` turn results into the HTML page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.errors import DataError
from medgen.evaluate import distributions as dist
from medgen.evaluate import report as rp
from medgen.intensity import robust_range
from medgen.io.atomic import full_suffix
from medgen.io.load import load_scan, scan_format

Named = Sequence[tuple[str, torch.Tensor]]


def load_folder(folder: str | Path) -> list[tuple[str, torch.Tensor]]:
    """``(name, scan)`` for every NIfTI/NRRD/MHA file directly in ``folder`` (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of scans")
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and scan_format(p) in ("nifti", "itk")]
    if not files:
        raise DataError(f"{folder}: no scans (.nii, .nii.gz, .nrrd, .mha, .mhd) in this folder")
    return [(p.name[: len(p.name) - len(full_suffix(p))], load_scan(p)) for p in files]


def evaluate_sets(
    real: Named, synthetic: Named, *, enhanced: Named = (), inputs: Named = (), training: Named | None = None,
    features: str | Path | None = None, qc_steps: int = 300, seed: int = 0,
    downstream: tuple[Sequence[dict], Sequence[dict]] | None = None, downstream_steps: int = 150,
    downstream_roi: Sequence[int] = (48, 48, 48),
) -> dict[str, Any]:
    """All metrics of ``synthetic`` (and ``enhanced``) against ``real``; see the module docstring.

    Args:
        real, synthetic, enhanced, inputs, training: ``(name, (C, X, Y, Z) scan)`` pairs; ``inputs``
            are the enhancement inputs, matched to ``enhanced`` by name.
        features: local MedicalNet/RadImageNet weights for FID/MMD (default: medgen's shipped network).
        downstream: ``(synthetic_items, real_items)`` with ``"image"`` and ``"label"`` (0-3) each: half the
            real items (the last by ``subject_id``) are held out to test segmenters trained for
            ``downstream_steps`` steps on ``downstream_roi`` crops (:func:`~medgen.evaluate.downstream.tstr_holdout`).
    """
    from medgen.evaluate.features import fid, load_feature_extractor, mmd
    from medgen.evaluate.privacy import memorisation_audit
    from medgen.evaluate.qc import fit_qc

    if len(real) < 2 or len(synthetic) < 1:
        raise DataError("evaluation needs at least 2 real scans and 1 synthetic scan")
    if downstream is not None:
        from medgen.evaluate.downstream import check_tstr_inputs

        check_tstr_inputs(*downstream)
    real_scans, syn_scans = [s for _, s in real], [s for _, s in synthetic]
    out: dict[str, Any] = {"n_real": len(real), "n_synthetic": len(synthetic)}

    extractor = load_feature_extractor(features)
    out["features"] = extractor.name
    fr, fs = extractor(real_scans), extractor(syn_scans)
    feature_rows = {"FID": fid, "feature MMD² (Gaussian kernel; 0 = same)": mmd}
    if len(synthetic) >= 2:
        metrics = [{"metric": name, "value": f(fr, fs), "on": extractor.name} for name, f in feature_rows.items()]
    else:
        metrics = [_missing(name, extractor.name, "needs at least 2 synthetic scans") for name in feature_rows]
    metrics += _generation_metrics(real_scans, syn_scans)
    intensity = dist.intensity_distance(real_scans, syn_scans)
    units = real_scans[0].meta.get("units", "") if hasattr(real_scans[0], "meta") else ""
    metrics += [{"metric": f"intensity Wasserstein-1 ({units or 'scan units'})", "value": intensity["wasserstein"],
                 "on": "foreground voxels"},
                {"metric": "intensity histogram intersection", "value": intensity["intersection"],
                 "on": "foreground voxels"}]
    out["metrics"] = metrics

    vol_real = [dist.tissue_volumes(dist.intensity_tissue_labels(s), _affine(s)) for s in real_scans]
    vol_syn = [dist.tissue_volumes(dist.intensity_tissue_labels(s), _affine(s)) for s in syn_scans]
    out["volumes"] = dist.compare_volumes(vol_real, vol_syn, {1: "dark (CSF)", 2: "mid (GM)", 3: "bright (WM)"})

    qc = fit_qc(real_scans, steps=qc_steps, seed=seed)
    checked = list(synthetic) + list(enhanced)
    out["qc"] = qc.check([s for _, s in checked], [n for n, _ in checked])
    out["qc_calibration"] = {"lower": qc.score_lower, "upper": qc.score_upper,
                             "atypical_threshold": qc.atypical_threshold}

    train = training if training is not None else real
    out["privacy"] = memorisation_audit(syn_scans, [s for _, s in train], synthetic_names=[n for n, _ in synthetic],
                                        training_names=[n for n, _ in train])
    if enhanced:
        out["enhancement"] = _enhancement(real, enhanced, inputs)
    if downstream is not None:
        from medgen.evaluate.downstream import tstr_holdout

        out["downstream"] = tstr_holdout(*downstream, steps=downstream_steps, seed=seed, roi=downstream_roi)
    return out


def _affine(scan: torch.Tensor) -> np.ndarray:
    from medgen.io.meta import affine_of

    return affine_of(scan)


def _missing(metric: str, on: str, reason: str) -> dict[str, Any]:
    """A metrics row that could not be computed: value None, and why (shown under the table)."""
    return {"metric": metric, "value": None, "on": on, "reason": reason}


def _generation_metrics(real: list, synthetic: list) -> list[dict[str, Any]]:
    """MS-SSIM diversity of the synthetic set and of the real set, each scan mapped to [-1, 1] by its own
    0.5-99.5 percentiles; rows that cannot be computed say why."""
    from medgen.evaluate.features import normalize_percentile
    from medgen.evaluate.generation import ms_ssim_diversity, ms_ssim_min_size

    names = {"synthetic": "MS-SSIM diversity (synthetic; 1 = identical)", "real": "MS-SSIM diversity (real, reference)"}
    shapes = sorted({tuple(s.shape) for s in list(real) + list(synthetic)})
    need = ms_ssim_min_size()
    if len(shapes) > 1:
        reason = f"the scans differ in shape ({', '.join(map(str, shapes))}); MS-SSIM compares scans voxel by voxel"
    elif min(shapes[0][1:]) < need:
        reason = f"scans of {shapes[0][1:]} voxels are too small: MS-SSIM needs {need} voxels a side"
    else:
        reason = None
    if reason is not None:
        return [_missing(name, "voxels", reason) for name in names.values()]
    to_unit = [normalize_percentile(torch.as_tensor(s)) * 2 - 1 for s in list(real) + list(synthetic)]
    r, s = to_unit[: len(real)], to_unit[len(real) :]
    if len(s) < 2:
        first = _missing(names["synthetic"], "voxels", "needs at least 2 synthetic scans")
    else:
        first = {"metric": names["synthetic"], "value": ms_ssim_diversity(s), "on": "voxels"}
    return [first, {"metric": names["real"], "value": ms_ssim_diversity(r), "on": "voxels"}]


def _enhancement(real: Named, enhanced: Named, inputs: Named) -> dict[str, Any]:
    from medgen.evaluate.fidelity import fidelity
    from medgen.evaluate.qc import region_differences

    real_by, inputs_by = dict(real), dict(inputs)
    fidelity_rows, regions = [], {}
    for name, out_scan in enhanced:
        if name in real_by:
            fidelity_rows.append({"scan": name, **fidelity(out_scan, real_by[name])})
        if name in inputs_by:
            regions[name] = region_differences(inputs_by[name], out_scan)
    return {"fidelity": fidelity_rows, "regions": regions}


def write_evaluation_report(
    results: dict[str, Any], real: Named, synthetic: Named, out: str | Path, *, enhanced: Named = (),
    inputs: Named = (),
) -> Path:
    """The HTML page (``out/index.html``, ``out/figures/*.png``, ``out/metrics.json``) of :func:`evaluate_sets`."""
    out = Path(out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    page = rp.Report("medgen evaluation: real vs synthetic" + (" vs enhanced" if enhanced else ""))
    page.text(f"{results['n_real']} real and {results['n_synthetic']} synthetic scans. "
              f"FID/MMD features: {results['features']}. FID from this network is comparable only with other "
              "FIDs computed with it, not with published (Inception) values.", note=True)
    page.heading("Scans")
    rows = [(f"real: {n}", s) for n, s in real[:2]] + [(f"synthetic: {n}", s) for n, s in synthetic[:2]]
    rows += [(f"enhanced: {n}", s) for n, s in enhanced[:2]]
    page.figure(rp.montage([s for _, s in rows], [t for t, _ in rows], figs / "montage.png"),
                "Orthogonal slices (axial, coronal, sagittal) through the volume centre; each row windowed "
                "to its own 0.5-99.5 percentiles.")
    inputs_by = dict(inputs)
    for name, scan in list(enhanced)[:2]:
        if name in inputs_by:
            page.figure(rp.difference_map(inputs_by[name], scan, figs / f"difference_{_safe(name)}.png"),
                        f"{name}: enhanced minus input (scan units; red = brighter after enhancement).")
    page.heading("Realism and diversity")
    page.table("Metrics", results["metrics"], ["metric", "value", "on"])
    for row in results["metrics"]:
        if row.get("reason"):
            page.text(f"{row['metric']}: not computed, {row['reason']}.", note=True)
    edges = np.linspace(*_range([s for _, s in list(real) + list(synthetic)]), 65)
    groups = {"real": dist.histograms([s for _, s in real], edges),
              "synthetic": dist.histograms([s for _, s in synthetic], edges)}
    page.figure(rp.histogram_plot(edges, groups, figs / "histograms.png"), "Foreground intensity histograms.")
    page.table("Tissue volumes (mL; multi-Otsu intensity classes of the foreground)", results["volumes"])
    page.figure(rp.bar_plot(results["volumes"], figs / "volumes.png"), "Tissue volumes, mean ± sd (mL).")
    page.heading("Quality control (patch normalizing flow fitted on the real scans)")
    cal = results["qc_calibration"]
    page.text(f"Typical band of the score: {cal['lower']:.3f} to {cal['upper']:.3f} nats/voxel; atypical "
              f"patches allowed: {100 * cal['atypical_threshold']:.1f}%. ood > 1 = flagged.", note=True)
    page.table("QC flags", results["qc"], ["name", "score", "atypical", "ood", "flag", "reasons"])
    page.heading("Memorisation audit")
    priv = results["privacy"]
    page.text(f"Similarity: {priv['method']}; threshold {priv['threshold']:.4f} from real-real nearest neighbours "
              f"(max {max(priv['reference']):.4f}). Flagged near-copies: {', '.join(priv['flagged']) or 'none'}.")
    page.table("Nearest training scan per synthetic scan", priv["rows"])
    enh = results.get("enhancement")
    if enh:
        page.heading("Enhancement")
        page.table("Fidelity against the real scan of the same name", enh["fidelity"])
        for name, rows_ in enh["regions"].items():
            page.table(f"Hallucination check: {name} (change per region; flag = beyond the input's noise)", rows_,
                       ["region", "volume_ml", "mean_abs", "p99_abs", "mean_signed", "mean_abs_sigma",
                        "p99_abs_sigma", "flag"])
    tstr = results.get("downstream")
    if tstr:
        page.heading("Downstream utility: train on synthetic, test on real")
        page.text(f"A 3D UNet trained {tstr['steps']} steps (seed {tstr['seed']}, {tstr['roi']} crops) on each set; "
                  f"Dice on {tstr['n_test']} held-out real scans ({', '.join(tstr['test_subjects'])}). Compare rows "
                  "with each other, not with published Dice; 'vs real' = mean Dice / train-on-real mean Dice.",
                  note=True)
        page.table("TSTR segmentation Dice", tstr["rows"],
                   ["train on", "n_train", "CSF", "GM", "WM", "mean", "vs real"])
    _write_json(out / "metrics.json", results)
    return page.write(out)


def write_run_report(run_dir: str | Path, out: str | Path) -> Path:
    """The HTML page of a training run folder: curves from its TensorBoard logs, config, samples, model card."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"{run}: no such run folder")
    out = Path(out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    page = rp.Report(f"medgen run: {run.name}")
    series = rp.read_scalars(run)
    page.heading("Training curves")
    if series:
        page.figure(rp.curves(series, figs / "curves.png"), f"Scalars from the TensorBoard event files in {run}.")
        page.table("Last values", [{"tag": t, "step": p[-1][0], "value": p[-1][1], "min": min(v for _, v in p)}
                                   for t, p in sorted(series.items())])
    else:
        page.text("No TensorBoard event files found in the run folder.", note=True)
    samples = [p for p in sorted(run.rglob("*")) if p.is_file() and scan_format(p) in ("nifti", "itk")][:4]
    if samples:
        page.heading("Samples")
        scans = [load_scan(p) for p in samples]
        page.figure(rp.montage(scans, [p.name for p in samples], figs / "samples.png"),
                    "Scans found in the run folder (orthogonal slices).")
    for name in ("config.yaml", "model/model_card.md"):
        if (run / name).is_file():
            page.heading(name)
            page.parts.append(f"<pre>{rp.html.escape((run / name).read_text()[:20000])}</pre>")
    return page.write(out)


def _range(scans: list) -> tuple[float, float]:
    values = np.concatenate([dist.foreground_values(s) for s in scans])
    lo, hi = robust_range(values)
    return float(lo), float(hi if hi > lo else lo + 1)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _write_json(path: Path, obj: Any) -> None:
    import json

    from medgen.io.atomic import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(rp.jsonable(obj), indent=2) + "\n")
