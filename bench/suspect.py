"""Suspect labels against a known answer: half-untouched fakes built from the real FF++ clips.

For every FF++ fake in ../shared/realdata whose original is there, a copy whose first half is the original's
frames (see dfkit.demo.suspect_check.py) is encoded at H.264 CRF 23 (c23) and CRF 40 (c40), ingested, scored by
`dfkit quality`, and its suspect labels compared with the truth; then the demo's constructed cases
(dfkit/demo/label_noise.py: a fake swapped from half-way, two-person fakes with the bystander swapped). Prints precision / recall of "suspect" =
"untouched", the change measured on each side, the rule's threshold, and the time.

    python bench/suspect.py [--frames 16] [--max-frames 150] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "ffpp_icpr2020dfdc"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16, help="frames sampled per video (default 16)")
    ap.add_argument("--max-frames", type=int, default=150, help="first frames of each clip used (default 150)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if not REALDATA.exists():
        print(f"bench/suspect.py: no real FF++ clips at {REALDATA}", file=sys.stderr)
        return 2
    from dfkit.quality.suspect import MAX_CHANGED_FACE
    from dfkit.demo.suspect_check import as_dict, build_half_untouched, score, score_label_noise_cases

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for comp, crf in (("c23", 23), ("c40", 40)):
            t0 = time.perf_counter()
            ds, corpus = Path(tmp) / f"ds-{comp}", Path(tmp) / f"corpus-{comp}"
            build_half_untouched(REALDATA, ds, crf, comp, max_frames=args.max_frames)
            r = as_dict(score(ds, corpus, frames=args.frames))
            r["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(r)
        t0 = time.perf_counter()
        r, per = score_label_noise_cases(Path(tmp) / "ds-demo", Path(tmp) / "corpus-demo")
        r = {**as_dict(r), "compression": "demo cases", "seconds": round(time.perf_counter() - t0, 1), "cases": per}
        rows.append(r)
    print(f"suspect rule: fr_change_face < {MAX_CHANGED_FACE} (share of the face box changed vs the original)")
    print(f"machine: {platform.machine()}, {platform.processor() or '?'}, Python {platform.python_version()}")
    print("| clips | crops | untouched | flagged | precision | recall | change untouched max | "
          "change manipulated min / median | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['compression']} (CRF {r['crf']}) | {r['crops']} | {r['untouched']} | {r['flagged']} | "
              f"{r['precision']:.2f} | {r['recall']:.2f} | {r['change_untouched_max']:.3f} | "
              f"{r['change_manipulated_min']:.3f} / {r['change_manipulated_median']:.3f} | {r['seconds']} |")
    for name, c in rows[-1]["cases"].items():
        print(f"demo case {name}: {c['crops']} crops, {c['untouched']} untouched, {c['flagged']} flagged, "
              f"track choice {', '.join(c['track_choice']) or '-'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
