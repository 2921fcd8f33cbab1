"""Does the suspect-label rule find untouched fake frames? Cases with a known answer, built from real clips.

:func:`build_half_untouched` takes an FF++-layout folder (the real clips of ``../shared/realdata``) and writes a
new FF++-layout dataset in which every fake whose original is there is *half untouched*: its first half is the
original's frames, its second half the fake's own frames, the whole encoded as one clip at H.264 ``crf`` -- as a
fake whose manipulation starts half-way through, or whose swap failed on part of the clip, would be. The
originals are re-encoded at the same ``crf`` (so at CRF 40 both sides carry c40-like damage, encoded separately).
The truth is known per frame: crops before the switch frame are not manipulated.

:func:`score` ingests that dataset, runs ``dfkit quality`` (full reference on every crop) and compares
``suspect_label`` with the truth: precision and recall of "suspect" = "untouched", and the change measured on each
side. ``bench/suspect.py`` prints them for c23 and c40; a test asserts them on c23.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: the FF++ layout's folders (relative to the dataset root)
ORIGINALS = Path("original_sequences/youtube")
FAKES = Path("manipulated_sequences")
TRUTH_FILE = "truth.json"


def _decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


#: the originals' x264 preset (the fakes': veryfast): separately encoded clips, as in a real dataset
ORIGINAL_PRESET = "medium"


def build_half_untouched(src_root: str | Path, out_root: str | Path, crf: int = 23,
                         compression: str = "c23", max_frames: int | None = None) -> dict:
    """Write the half-untouched dataset (see the module docstring) under ``out_root``; returns and stores
    (``truth.json``) ``{"crf", "fakes": {rel_path: {"switch": frame, "n_frames": n}}}``. Fakes whose original
    is absent are skipped (they cannot be checked). ``max_frames`` keeps only each clip's first frames (faster)."""
    from dfkit.media import write_h264

    src, out = Path(src_root), Path(out_root)
    originals = {p.stem: p for p in (src / ORIGINALS).glob("*/videos/*.mp4")}
    truth: dict = {"crf": crf, "compression": compression, "fakes": {}}
    made: dict[str, list[np.ndarray]] = {}
    for fake in sorted((src / FAKES).glob("*/*/videos/*.mp4")):
        target = fake.stem.split("_")[0]
        if target not in originals:
            continue
        if target not in made:
            made[target] = _decode(originals[target])[:max_frames]
            # the original and the fakes are encoded separately, as a dataset's are: another preset, so the untouched
            # frames of a fake carry their own compression noise (one encoder and preset would encode the shared
            # first half byte for byte, and the check would compare identical pixels)
            write_h264(out / ORIGINALS / compression / "videos" / f"{target}.mp4", made[target], crf,
                       preset=ORIGINAL_PRESET)
        orig, fk = made[target], _decode(fake)
        n = min(len(orig), len(fk))
        switch = n // 2
        method = fake.parts[-4]
        rel = FAKES / method / compression / "videos" / fake.name
        write_h264(out / rel, orig[:switch] + fk[switch:n], crf, preset="veryfast")
        truth["fakes"][rel.as_posix()] = {"switch": switch, "n_frames": n}
    (out / TRUTH_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1))
    return truth


@dataclass
class CheckResult:
    compression: str
    crf: int
    crops: int  # paired fake crops checked
    untouched: int  # of which truly untouched (before the switch)
    flagged: int
    true_positive: int
    precision: float
    recall: float
    change_untouched_max: float  # fr_change_face, untouched crops
    change_manipulated_min: float  # fr_change_face, manipulated crops
    change_manipulated_median: float


def score(dataset_root: str | Path, corpus: str | Path, frames: int = 16, truth: dict | None = None) -> CheckResult:
    """Ingest ``dataset_root`` (FF++ adapter) into ``corpus``, run quality, and score suspect labels against the
    truth written by :func:`build_half_untouched`."""
    import dfkit.corpus
    from dfkit import services
    from dfkit.corpus.schema import SUSPECT_COLUMN

    root = Path(dataset_root)
    truth = truth or json.loads((root / TRUTH_FILE).read_text())
    services.ingest("ffpp", root, corpus, compression=truth["compression"], frames=frames, workers=1,
                    progress=False)
    services.quality(corpus, workers=1, progress=False)
    m = dfkit.corpus.open(corpus).metadata()
    f = m[(m["label"] == "fake") & m[SUSPECT_COLUMN].notna()]
    switch = {k: v["switch"] for k, v in truth["fakes"].items()}
    untouched = [fi < switch[vp] for vp, fi in zip(f["video_path"], f["frame_index"])]
    return _score_table(f, untouched, truth["compression"], int(truth["crf"]))


def _score_table(f, untouched, compression: str, crf: int) -> CheckResult:
    from dfkit.corpus.schema import SUSPECT_COLUMN

    flag = f[SUSPECT_COLUMN].astype(bool).to_numpy()
    untouched = np.asarray(untouched, dtype=bool)
    tp = int((flag & untouched).sum())
    ch = f["fr_change_face"].astype(float).to_numpy()
    u, mnp = ch[untouched], ch[~untouched]
    return CheckResult(
        compression=compression, crf=crf, crops=len(f), untouched=int(untouched.sum()), flagged=int(flag.sum()),
        true_positive=tp, precision=tp / max(int(flag.sum()), 1), recall=tp / max(int(untouched.sum()), 1),
        change_untouched_max=float(u.max()) if len(u) else float("nan"),
        change_manipulated_min=float(mnp.min()) if len(mnp) else float("nan"),
        change_manipulated_median=float(np.median(mnp)) if len(mnp) else float("nan"))


def score_label_noise_cases(root: str | Path, corpus: str | Path) -> tuple[CheckResult, dict[str, dict]]:
    """The demo's constructed cases (:func:`dfkit.demo.label_noise.make_label_noise_cases`: a fake swapped from
    half-way, a two-person fake with the bystander swapped, the same with a mask video), ingested (every frame),
    scored, and their suspect labels compared with the truth. Returns the overall result and, per case, the crops,
    untouched crops, flagged crops and the track choices made."""
    import dfkit.corpus
    from dfkit import services
    from dfkit.corpus.schema import SUSPECT_COLUMN
    from dfkit.demo.label_noise import N_FRAMES, make_label_noise_cases

    truth = make_label_noise_cases(root)
    services.ingest("ffpp", root, corpus, compression=truth["compression"], frames=N_FRAMES, workers=1,
                    progress=False)
    services.quality(corpus, workers=1, progress=False)
    m = dfkit.corpus.open(corpus).metadata()
    f = m[(m["label"] == "fake") & m[SUSPECT_COLUMN].notna()]
    by_vid = {c["video_id"]: (name, set(c["untouched_frames"])) for name, c in truth["cases"].items()}
    f = f[f["video_id"].isin(by_vid)]
    untouched = [fi in by_vid[v][1] for v, fi in zip(f["video_id"], f["frame_index"])]
    per: dict[str, dict] = {}
    for v, (name, un) in by_vid.items():
        g = f[f["video_id"] == v]
        per[name] = {"crops": len(g), "untouched": int(g["frame_index"].isin(un).sum()),
                     "flagged": int(g[SUSPECT_COLUMN].astype(bool).sum()),
                     "track_choice": sorted(set(g["track_choice"].dropna())) if "track_choice" in g else []}
    return _score_table(f, untouched, truth["compression"], 23), per


def as_dict(r: CheckResult) -> dict:
    return asdict(r)
