"""Benchmark of dfkit.quality: milliseconds per 256² crop, per core, for the default no-reference metric set.

Crops are real: faces cut (as the ingest cuts them) from frames of ../shared/realdata/ffpp_icpr2020dfdc/**/*.mp4
decoded with PyAV, or from skimage.data.astronaut() when that folder is absent. Runs single-threaded (OpenCV and
torch set to 1 thread) so the number is per core. Prints the time with and without PNG decoding, per metric, the
ratio to the 2 ms target (issue 17; 5 ms before), the PNG decoder in use (libspng through pyspng when installed)
beside OpenCV's, and (unless --no-fullref) the full-reference cost per pair and the decodes one shared
``DecodedCrops`` saves when the quality pass and the full-reference pass measure the same crops.

    python bench/quality.py [--crops 64] [--repeat 3] [--no-fullref]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # quality_samples: the tests' real crops

import cv2  # noqa: E402

TARGET_MS = 2.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=int, default=64, help="number of crops (default 64)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats, best is reported (default 3)")
    ap.add_argument("--no-fullref", action="store_true", help="skip the full-reference timing")
    args = ap.parse_args(argv)

    cv2.setNumThreads(1)
    import quality_samples as samples
    from dfkit.quality.base import get_metrics
    from dfkit.corpus.codec import try_decode_crop as decode_crop
    from dfkit.quality.compute import compute_quality
    from dfkit.quality.view import CropView

    t0 = time.perf_counter()
    rows = samples.sample_rows(args.crops)
    source = "FF++ frames from " + str(samples.realdata_root()) if samples.ffpp_videos() else "skimage astronaut"
    if not rows:
        print("no crops could be made (no face found)")
        return 1
    table = samples.rows_to_table(rows)
    print(f"{len(rows)} crops of {rows[0]['crop_size']}² from {source} (made in {time.perf_counter() - t0:.1f} s)")

    compute_quality(table.slice(0, min(4, len(rows))))  # warm-up (imports, registry)

    def best(fn):
        ts = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return min(ts) * 1000 / len(rows)

    total = best(lambda: compute_quality(table))
    crops = [decode_crop(r["crop"]) for r in rows]
    dec = best(lambda: [decode_crop(r["crop"]) for r in rows])
    import numpy as np

    from dfkit.corpus import codec

    def opencv(b):
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    dec_cv = best(lambda: [opencv(r["crop"]) for r in rows])
    fast = codec._fast_png(rows[0]["crop"]) is not None
    same = all(np.array_equal(decode_crop(r["crop"]), opencv(r["crop"])) for r in rows)
    per_metric = {}
    for m in get_metrics():
        if m.level == "crop":
            def run(m=m):
                for c, r in zip(crops, rows):
                    v = CropView(c, r)
                    m.measure(v)
                    m.measure_extras(v)
        else:
            def run(m=m):
                m.measure_video(rows)
        per_metric[m.name] = best(run)
    shared = best(lambda: [(lambda v: (v.face_u8, v.core_u8))(CropView(c, r)) for c, r in zip(crops, rows)])

    print(f"\ncompute_quality (decode + all {len(per_metric)} metrics + composite): {total:.2f} ms/crop/core "
          f"= {total / TARGET_MS:.2f} x the {TARGET_MS:g} ms target -> {'OK' if total <= TARGET_MS else 'OVER'}")
    print(f"  of which PNG decode: {dec:.2f} ms/crop ({'libspng (pyspng)' if fast else 'OpenCV'}; OpenCV's libpng: "
          f"{dec_cv:.2f} ms, pixels {'identical' if same else 'DIFFERENT'}); without decode: {total - dec:.2f} ms/crop "
          f"= {(total - dec) / TARGET_MS:.2f} x target")
    print(f"  shared per-crop preparation (luma, working grid, regions): {shared:.2f} ms/crop")
    print("  per metric (each including its own share of the preparation, so they overlap):")
    for k, v in per_metric.items():
        print(f"    {k:12s} {v:7.3f} ms/crop")

    if not args.no_fullref:
        fakes, refs = samples.paired_rows(2)
        if not fakes:
            a = rows[0]
            fakes, refs = [dict(a, sample_id="f", pair_video_id=a["video_id"])], [a]
        from dfkit.quality.fullref import compute_fullref

        ft, rt = samples.rows_to_table(fakes), samples.rows_to_table(refs)
        compute_fullref(ft.slice(0, 1), rt)
        ts = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            compute_fullref(ft, rt)
            ts.append(time.perf_counter() - t)
        print(f"\ncompute_fullref (psnr, ssim, ms_ssim, gmsd, haarpsi + change map), 1 thread: "
              f"{min(ts) * 1000 / len(fakes):.1f} ms/pair ({len(fakes)} pairs; not part of the {TARGET_MS:g} ms target)")
        from dfkit.corpus.codec import DecodedCrops

        d = DecodedCrops()
        compute_quality(ft, decoded=d)
        compute_fullref(ft, rt, decoded=d)
        naive = 2 * len(fakes) + len(fakes)  # fake decoded per pass, its reference per pair
        print(f"quality + full-reference pass over {len(fakes)} fakes: {d.decodes} decodes with one DecodedCrops "
              f"(each crop once) against {naive} decoding per pass and per pair")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
