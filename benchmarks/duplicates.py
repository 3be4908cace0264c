"""Near-duplicate thresholds and recall on synthetic re-saves, re-bars, crops and re-scans.

For each seed, ``semcat.synth.write_duplicate_set`` writes ``--fields`` fields (categories in
turn) as original, JPEG re-save, other data bar, 80-90 % crop, re-scan (new noise, moved stage,
slightly changed contrast) and a *sibling* (another field of the same sample and look). Reports:

1. the distributions behind ``semcat.duplicates``' thresholds: perceptual-hash distance, feature
   cosine and centre-matching correlation of each variant to its original, and the closest
   values over all pairs of different fields (siblings included);
2. recall per variant and false merges of ``scan_duplicates`` with and without features;
3. time per image against the baseline of hashing the same files (SHA-256) in the same run.

    python benchmarks/duplicates.py --fields 100 --size 256 --seeds 0,1,2

Writes ``benchmarks/results/duplicates.md``.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import header, write_results

ROOT = Path(__file__).resolve().parents[1]


def measure(folder: Path) -> tuple[dict, list[tuple], dict]:
    """Per-variant (hamming, cosine, ncc) to the original, closest different-field values, timings."""
    from semcat._io import sha256_file
    from semcat.duplicates import alignment_score, load_thumb, phash_file
    from semcat.features import extract_features

    rows = list(csv.DictReader((folder / "truth.csv").open(newline="")))
    paths = [folder / r["file"] for r in rows]
    t0 = time.perf_counter()
    for p in paths:
        sha256_file(p)
    t_sha = time.perf_counter() - t0
    t0 = time.perf_counter()
    ph = [phash_file(p) for p in paths]
    t_phash = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = extract_features(paths, progress=False).features  # into the (temporary) default store
    t_feat = time.perf_counter() - t0
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    thumbs = [load_thumb(p) for p in paths]
    field = [r["field"] for r in rows]
    orig = {r["field"]: i for i, r in enumerate(rows) if r["variant"] == "original"}
    per: dict[str, list[tuple[int, float, float]]] = {}
    for i, r in enumerate(rows):
        if r["variant"] in ("original", "sibling"):
            continue
        o = orig[r["field"]]
        ham = min(bin(a ^ b).count("1") for a, b in zip(ph[o], ph[i]))
        per.setdefault(r["variant"], []).append((ham, float(x[o] @ x[i]), alignment_score(thumbs[o], thumbs[i])))
    sims = x @ x.T
    neg = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            if field[i] != field[j]:
                ham = min(bin(a ^ b).count("1") for a, b in zip(ph[i], ph[j]))
                neg.append((ham, float(sims[i, j]), i, j))
    close = sorted(neg, key=lambda t: -t[1])[:200] + sorted(neg, key=lambda t: t[0])[:200]
    ncc = [alignment_score(thumbs[i], thumbs[j]) for _, _, i, j in close]
    worst = {"min_ham": min(t[0] for t in neg), "max_cos": max(t[1] for t in neg), "max_ncc": max(ncc)}
    times = {"sha": t_sha, "phash": t_phash, "features": t_feat, "n": len(paths)}
    return per, worst, times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=100, help="fields per seed (6 files each)")
    ap.add_argument("--size", type=int, default=256, help="side of the images in pixels")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/duplicates.md")
    args = ap.parse_args(argv)
    from semcat.duplicates import ALIGN_MIN_NCC, FEATURE_MIN_COSINE, PHASH_MAX_DISTANCE, scan_duplicates
    from semcat.synth.duplicates import score_groups, write_duplicate_set

    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    per: dict[str, list] = {}
    worst: list[dict] = []
    scores: dict[str, list[dict]] = {"features": [], "no features": []}
    times: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEMCAT_HOME"] = str(Path(tmp) / "home")  # a cold feature cache, then reused by the scan
        for seed in seeds:
            folder = write_duplicate_set(Path(tmp) / f"s{seed}", fields=args.fields, size=args.size, seed=seed).parent
            p, w, t = measure(folder)
            for k, v in p.items():
                per.setdefault(k, []).extend(v)
            worst.append(w)
            times.append(t)
            for name, feats in (("features", True), ("no features", False)):
                t0 = time.perf_counter()
                found = scan_duplicates(folder, features=feats)
                t[f"scan {name}"] = time.perf_counter() - t0
                scores[name].append(score_groups(found.path_groups(), folder / "truth.csv"))
    n = sum(t["n"] for t in times)
    lines = header(f"Near duplicates: {args.fields} fields x 6 files, {args.size} px, seeds {args.seeds}",
                   started=started, argv=argv) + [
        f"- thresholds in `semcat.duplicates`: perceptual hash <= {PHASH_MAX_DISTANCE} bits or feature cosine >= "
        f"{FEATURE_MIN_COSINE} proposes a pair; centre-matching correlation >= {ALIGN_MIN_NCC} confirms it",
        "",
        "## Each variant against its original",
        "",
        "| variant | pairs | hash bits median / max | cosine min / median | correlation min / median |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, v in per.items():
        a = np.array(v)
        lines.append(f"| {k} | {len(a)} | {np.median(a[:, 0]):.0f} / {a[:, 0].max():.0f} | {a[:, 1].min():.3f} / "
                     f"{np.median(a[:, 1]):.3f} | {a[:, 2].min():.3f} / {np.median(a[:, 2]):.3f} |")
    lines += [
        "",
        "Different fields (siblings of the same sample included), closest over each seed's set: "
        + "; ".join(f"seed {s}: hash bits >= {w['min_ham']}, cosine <= {w['max_cos']:.3f}, correlation <= "
                    f"{w['max_ncc']:.3f} (over the 400 closest pairs)" for s, w in zip(seeds, worst)),
        "",
        "## `scan_duplicates` recall and false merges",
        "",
        "| mode | resave | rebar | crop | rescan | all | false merges |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, sc in scores.items():
        rec = {k: np.mean([s["recall"][k] for s in sc]) for k in sc[0]["recall"]}
        lines.append(f"| {name} | " + " | ".join(f"{rec[k]:.3f}" for k in ("resave", "rebar", "crop", "rescan"))
                     + f" | {np.mean([s['recall_all'] for s in sc]):.3f} | {sum(s['false_merges'] for s in sc)} |")
    sha = sum(t["sha"] for t in times)
    lines += [
        "",
        f"## Time per image ({n} files, {len(seeds)} seeds)",
        "",
        "| step | ms per image | vs SHA-256 baseline |",
        "|---|---:|---:|",
        f"| baseline: SHA-256 of the file | {1000 * sha / n:.2f} | 1.0x |",
        f"| perceptual hashes (two decodes at 256 px) | {1000 * sum(t['phash'] for t in times) / n:.2f} | "
        f"{sum(t['phash'] for t in times) / sha:.0f}x |",
        f"| features, computed (no cache) | {1000 * sum(t['features'] for t in times) / n:.2f} | "
        f"{sum(t['features'] for t in times) / sha:.0f}x |",
        f"| `scan_duplicates(features=False)` | {1000 * sum(t['scan no features'] for t in times) / n:.2f} | "
        f"{sum(t['scan no features'] for t in times) / sha:.0f}x |",
        f"| `scan_duplicates()` (features from the cache) | {1000 * sum(t['scan features'] for t in times) / n:.2f} | "
        f"{sum(t['scan features'] for t in times) / sha:.0f}x |",
    ]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
