"""Full-reference metrics: how strongly, and where, a crop differs from its reference crop.

Two uses, one function (:func:`compute_fullref`):

* ``on="pair"`` (default): a fake crop against its original -- the row of ``ref_table`` with
  ``video_id == fake.pair_video_id`` (same ``dataset``) and the same ``frame_index``. Paired fakes are cut with the
  original's ``crop_box``, so the crops compare pixel for pixel: this measures the manipulation. A fake cut on a face
  that is not its original's own crop (ingest chose another person's track: ``track_choice``) carries the
  original's frame cut at its own box in ``ref_crop``; that reference is preferred when present (``ref_sample_id``
  still names the original's frame).
* ``on="content"``: a compressed crop against the same content at another compression level -- the row of
  ``ref_table`` with the same ``dataset``, ``content_id`` and ``frame_index`` (the lowest compression level when
  several match, never the row itself). Detection ran separately per level, so crop boxes may differ slightly: the
  reference crop is then warped onto the crop's geometry (``fr_aligned`` = true) and only the overlap is compared
  (``fr_overlap`` = its fraction of the crop; under 0.8 -> no values). This measures the compression damage.

Columns (keyed by the crop's ``sample_id``): ``ref_sample_id``, ``fr_on``, ``fr_aligned``, ``fr_overlap``; through
piq, on RGB in [0, 1]: ``fr_psnr`` (dB, capped at 80 for identical crops), ``fr_ssim`` and ``fr_ms_ssim`` (on luma,
as the SSIM reference code; MS-SSIM with as many of its 5 scales as the crop allows: all 5 need >= 161 px, fewer
scales (weights renormalised) below, NaN under 21 px), ``fr_gmsd`` (0 = identical, higher = more different),
``fr_haarpsi`` (1 = identical); and a change-map summary: the absolute luma difference,
Gaussian-smoothed (σ = 1.5 px at 256²), thresholded at 8 grey levels: ``fr_change_face`` = fraction of the face
region (detection box in the crop) that changed, ``fr_change_outside`` = the same outside the face box (blending
leaks, re-encoding), ``fr_change_mean`` = mean absolute luma difference in the face region (grey levels);
``fr_errors``.

Learned metrics (LPIPS, DISTS) download weights in piq, so they are never on by default: pass
``learned_weights=DIR`` where DIR holds the files ``lpips_weights.pt`` and/or ``dists_weights.pt`` together with
torchvision's ``vgg16-397923af.pth``; they add ``fr_lpips`` / ``fr_dists``. A missing file is an error, never a
download.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pyarrow as pa

from dfkit.corpus.codec import DecodedCrops
from dfkit.corpus.schema import CROP_IMAGE_COLUMNS, sample_id
from dfkit.quality.metrics.compression import compression_level
from dfkit.quality.view import CropView, effective_crop_box

DEFAULT_FR_METRICS = ("psnr", "ssim", "ms_ssim", "gmsd", "haarpsi")
LEARNED = {"lpips": "lpips_weights.pt", "dists": "dists_weights.pt"}
VGG16_FILE = "vgg16-397923af.pth"
CHANGE_THRESHOLD = 8.0  # grey levels of smoothed |Δluma|
CHANGE_SIGMA = 1.5  # px at 256²
MIN_OVERLAP = 0.8
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ----------------------------------------------------------------------------------------------------------------------
# pixels
# ----------------------------------------------------------------------------------------------------------------------


def change_map(crop_rgb: np.ndarray, ref_rgb: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Smoothed absolute luma difference (grey levels, float32, crop size): where the crop differs from its
    reference. ``> CHANGE_THRESHOLD`` marks a changed pixel."""
    a = cv2.cvtColor(np.ascontiguousarray(crop_rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    b = cv2.cvtColor(np.ascontiguousarray(ref_rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    d = np.abs(a - b)
    s = CHANGE_SIGMA * a.shape[0] / 256 if sigma is None else sigma
    return cv2.GaussianBlur(d, (0, 0), s) if s > 0 else d


def change_summary(cmap: np.ndarray, face_rect: tuple[int, int, int, int] | None) -> dict[str, float]:
    changed = cmap > CHANGE_THRESHOLD
    h, w = cmap.shape
    inside = np.zeros((h, w), dtype=bool)
    if face_rect is not None:
        r0, r1, c0, c1 = face_rect
        inside[r0:r1, c0:c1] = True
    if not inside.any():
        inside[:] = True
    out = {"change_face": float(changed[inside].mean()), "change_mean": float(cmap[inside].mean())}
    out["change_outside"] = float(changed[~inside].mean()) if (~inside).any() else math.nan
    return out


def align_reference(row: dict, ref_row: dict, ref_rgb: np.ndarray, shape) -> tuple[np.ndarray, tuple | None, float]:
    """The reference crop on the crop's geometry: ``(ref_rgb_aligned, overlap_rect or None, overlap_fraction)``.
    ``overlap_rect`` (r0, r1, c0, c1) is set when the crop boxes differ (only that rectangle is comparable)."""
    h, w = shape[:2]
    a, b = effective_crop_box(row.get("crop_box")), effective_crop_box(ref_row.get("crop_box"))
    if a is None or b is None or (a == b):
        if ref_rgb.shape[:2] != (h, w):
            interp = cv2.INTER_AREA if ref_rgb.shape[0] > h else cv2.INTER_CUBIC
            ref_rgb = cv2.resize(ref_rgb, (w, h), interpolation=interp)
        return ref_rgb, None, 1.0
    (xf, yf, sf), (xr, yr, sr) = a, b
    nr = ref_rgb.shape[1]
    s = sf * nr / (w * sr)  # ref px per crop px
    m = np.array([[s, 0, (xf - xr) * nr / sr + 0.5 * s - 0.5],
                  [0, s, (yf - yr) * nr / sr + 0.5 * s - 0.5]], dtype=np.float64)
    warped = cv2.warpAffine(ref_rgb, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # the overlap of the two source squares, in crop pixels
    ox0, oy0 = max(xf, xr), max(yf, yr)
    ox1, oy1 = min(xf + sf, xr + sr), min(yf + sf, yr + sr)
    if ox1 <= ox0 or oy1 <= oy0:
        return warped, (0, 0, 0, 0), 0.0
    k = w / sf
    c0, c1 = int(math.ceil((ox0 - xf) * k)) + 1, int(math.floor((ox1 - xf) * k)) - 1
    r0, r1 = int(math.ceil((oy0 - yf) * k)) + 1, int(math.floor((oy1 - yf) * k)) - 1
    r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
    frac = max(0, r1 - r0) * max(0, c1 - c0) / float(h * w)
    return warped, (r0, r1, c0, c1), frac


# ----------------------------------------------------------------------------------------------------------------------
# piq
# ----------------------------------------------------------------------------------------------------------------------


def _ms_ssim_scales(side: int, kernel: int = 11) -> int:
    levels = 0
    while levels < 5 and side >= (kernel - 1) * 2 ** levels + 1:
        levels += 1
    return levels


@contextmanager
def _offline_hub(weights_dir: Path, needed: Sequence[str]):
    """Point torch.hub at ``weights_dir`` (through a temporary ``checkpoints`` link) so piq/torchvision find their
    files there; refuse (FileNotFoundError) when one is missing instead of letting them download."""
    import torch

    missing = [f for f in needed if not (weights_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"learned full-reference metrics need {', '.join(missing)} in {weights_dir} "
                                f"(nothing is downloaded)")
    old = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="dfkit-hub-") as tmp:
        os.symlink(weights_dir.resolve(), Path(tmp) / "checkpoints")
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub.set_dir(old)


def load_learned(weights_dir: str | os.PathLike, names: Sequence[str] | None = None) -> dict:
    """piq LPIPS / DISTS models from local weight files (see the module doc). ``names`` default: those whose
    weight file is present in ``weights_dir``."""
    import piq

    d = Path(weights_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"learned-metric weights folder {d} does not exist")
    names = [n for n in LEARNED if (d / LEARNED[n]).is_file()] if names is None else list(names)
    unknown = [n for n in names if n not in LEARNED]
    if unknown:
        raise ValueError(f"unknown learned metric(s) {unknown}; known: {', '.join(LEARNED)}")
    models = {}
    for n in names:
        with _offline_hub(d, [LEARNED[n], VGG16_FILE]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained=True is deprecated"
            models[n] = (piq.LPIPS(reduction="none") if n == "lpips" else piq.DISTS(reduction="none")).eval()
    return models


def piq_metrics(x: np.ndarray, y: np.ndarray, metrics: Sequence[str] = DEFAULT_FR_METRICS,
                learned: dict | None = None) -> dict[str, np.ndarray]:
    """piq metrics of a batch: ``x``, ``y`` uint8 (N, H, W, 3) RGB, same size -> ``{name: (N,) array}``."""
    import piq
    import torch

    out: dict[str, np.ndarray] = {}
    if len(x) == 0:
        return {m: np.zeros(0) for m in list(metrics) + list(learned or {})}
    with torch.no_grad():
        tx = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0)
        ty = torch.from_numpy(np.ascontiguousarray(y)).permute(0, 3, 1, 2).float().div_(255.0)
        # SSIM / MS-SSIM on luma (BT.601), as Wang et al.'s reference implementation: 3x cheaper than per channel
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        lx, ly = (tx * luma).sum(1, keepdim=True), (ty * luma).sum(1, keepdim=True)
        side = min(tx.shape[-2:])
        for m in metrics:
            if m == "psnr":
                v = piq.psnr(tx, ty, data_range=1.0, reduction="none")
            elif m == "ssim":
                v = piq.ssim(lx, ly, data_range=1.0, reduction="none") if side >= 11 else None
            elif m == "ms_ssim":
                lv = _ms_ssim_scales(side)
                if lv >= 2:
                    w = torch.tensor(MS_SSIM_WEIGHTS[:lv])
                    v = piq.multi_scale_ssim(lx, ly, data_range=1.0, reduction="none", scale_weights=w)
                else:
                    v = None
            elif m == "gmsd":
                v = piq.gmsd(tx, ty, data_range=1.0, reduction="none") if side >= 8 else None
            elif m == "haarpsi":
                v = piq.haarpsi(tx, ty, data_range=1.0, reduction="none") if side >= 32 else None
            else:
                raise ValueError(f"unknown full-reference metric {m!r}; known: {', '.join(DEFAULT_FR_METRICS)}")
            out[m] = np.full(len(x), np.nan) if v is None else v.reshape(-1).double().numpy()
        for name, model in (learned or {}).items():
            out[name] = model(tx, ty).reshape(-1).double().numpy()
    return out


# ----------------------------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------------------------


def fullref_schema(metrics: Sequence[str] = DEFAULT_FR_METRICS, learned: Sequence[str] = ()) -> pa.Schema:
    fields = [pa.field("sample_id", pa.string(), nullable=False), pa.field("ref_sample_id", pa.string()),
              pa.field("fr_on", pa.string()), pa.field("fr_aligned", pa.bool_()), pa.field("fr_overlap", pa.float32())]
    fields += [pa.field(f"fr_{m}", pa.float32()) for m in list(metrics) + list(learned)]
    fields += [pa.field("fr_change_face", pa.float32()), pa.field("fr_change_outside", pa.float32()),
               pa.field("fr_change_mean", pa.float32()), pa.field("fr_errors", pa.string())]
    return pa.schema(fields)


def _match(rows: list[dict], refs: list[dict], on: str) -> list[int | None]:
    if on == "pair":
        index = {(r.get("dataset"), r.get("video_id"), r.get("frame_index")): j for j, r in enumerate(refs)}
        return [index.get((r.get("dataset"), r.get("pair_video_id"), r.get("frame_index")))
                if r.get("pair_video_id") else None for r in rows]
    if on == "content":
        best: dict = {}
        for j, r in enumerate(refs):
            k = (r.get("dataset"), r.get("content_id"), r.get("frame_index"))
            lv = compression_level(r.get("compression"))
            lv = math.inf if math.isnan(lv) else lv
            best.setdefault(k, []).append((lv, j))
        out = []
        for r in rows:
            cands = sorted(best.get((r.get("dataset"), r.get("content_id"), r.get("frame_index")), []))
            cands = [j for _, j in cands if refs[j].get("sample_id") != r.get("sample_id")
                     and refs[j].get("compression") != r.get("compression")]
            out.append(cands[0] if cands else None)
        return out
    raise ValueError(f"on must be 'pair' or 'content', not {on!r}")


@contextmanager
def _torch_threads(n: int | None):
    import torch

    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def compute_fullref(fake_table: pa.Table, ref_table: pa.Table, on: str = "pair",
                    metrics: Sequence[str] = DEFAULT_FR_METRICS, learned_weights: str | os.PathLike | None = None,
                    batch_size: int = 32, threads: int | None = 1,
                    decoded: DecodedCrops | None = None) -> pa.Table:
    """Full-reference metrics of each row of ``fake_table`` against its reference in ``ref_table`` (see the
    module doc); one output row per input row (values null when no reference was found), keyed by ``sample_id``.

    ``threads``: torch threads while computing (default 1: parallelise with processes; piq's convolutions gain
    little from more threads on small crops). None leaves torch's setting alone. ``decoded``: a
    :class:`~dfkit.corpus.codec.DecodedCrops` shared with the other passes over the same crops; without one, each
    reference is still decoded once for all the fakes that share it."""
    with _torch_threads(threads):
        return _compute_fullref(fake_table, ref_table, on, metrics, learned_weights, batch_size,
                                decoded if decoded is not None else DecodedCrops())


def _compute_fullref(fake_table, ref_table, on, metrics, learned_weights, batch_size, decoded) -> pa.Table:
    learned = load_learned(learned_weights) if learned_weights is not None else {}
    rows = fake_table.select([c for c in fake_table.column_names if c not in CROP_IMAGE_COLUMNS]).to_pylist()
    refs = ref_table.select([c for c in ref_table.column_names if c not in CROP_IMAGE_COLUMNS]).to_pylist()
    crops = fake_table.column("crop").to_pylist()
    ref_crops = ref_table.column("crop").to_pylist()
    own_refs = (fake_table.column("ref_crop").to_pylist() if on == "pair" and "ref_crop" in fake_table.column_names
                else [None] * fake_table.num_rows)
    match = _match(rows, refs, on)
    n = len(rows)
    cols = {k: [None] * n for k in fullref_schema(metrics, list(learned)).names}
    cols["sample_id"] = [r.get("sample_id") for r in rows]
    cols["fr_on"] = [on] * n
    errors: list[list[str]] = [[] for _ in range(n)]

    pending: dict[tuple, list] = {}  # size -> [(i, x, y)]

    def flush(key):
        items = pending.pop(key, [])
        if not items:
            return
        xs = np.stack([x for _, x, _ in items])
        ys = np.stack([y for _, _, y in items])
        try:
            vals = piq_metrics(xs, ys, metrics, learned)
        except Exception as e:  # noqa: BLE001
            for i, _, _ in items:
                errors[i].append(f"piq: {type(e).__name__}: {e}")
            return
        for name, arr in vals.items():
            for (i, _, _), v in zip(items, arr):
                cols[f"fr_{name}"][i] = float(v) if np.isfinite(v) else None

    for i, (row, j) in enumerate(zip(rows, match)):
        if own_refs[i] is not None:  # the original cut at this crop's own box: compares as it is
            ref, ref_bytes = row, own_refs[i]
            ref_id = sample_id(row.get("dataset"), row.get("pair_video_id"), row.get("frame_index"))
        elif j is not None:
            ref, ref_bytes, ref_id = refs[j], ref_crops[j], refs[j].get("sample_id")
        else:
            continue
        cols["ref_sample_id"][i] = ref_id
        x = decoded.get(row.get("sample_id"), crops[i])
        y = decoded.get(ref_id if own_refs[i] is None else None, ref_bytes)  # a row's own ref_crop: not shared
        if x is None or y is None:
            errors[i].append("crop: undecodable or missing crop bytes")
            continue
        y, rect, overlap = align_reference(row, ref, y, x.shape)
        cols["fr_aligned"][i] = rect is not None
        cols["fr_overlap"][i] = overlap
        if overlap < MIN_OVERLAP:
            errors[i].append(f"reference overlaps only {overlap:.0%} of the crop")
            continue
        face = CropView(x, row).face_rect
        if rect is not None:
            r0, r1, c0, c1 = rect
            x, y = x[r0:r1, c0:c1], y[r0:r1, c0:c1]
            f0, f1, g0, g1 = face
            face = (max(f0 - r0, 0), max(min(f1, r1) - r0, 0), max(g0 - c0, 0), max(min(g1, c1) - c0, 0))
        summ = change_summary(change_map(x, y), face)
        for k, v in summ.items():
            cols[f"fr_{k}"][i] = None if math.isnan(v) else v
        key = x.shape
        pending.setdefault(key, []).append((i, np.ascontiguousarray(x), np.ascontiguousarray(y)))
        if len(pending[key]) >= batch_size:
            flush(key)
    for key in list(pending):
        flush(key)
    cols["fr_errors"] = ["; ".join(e) if e else None for e in errors]
    schema = fullref_schema(metrics, list(learned))
    return pa.table([pa.array(cols[f.name], f.type) for f in schema], schema=schema)
