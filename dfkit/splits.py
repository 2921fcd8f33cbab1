"""Split leaks and identity-disjoint re-splits.

``dfkit splits audit`` asks, for each dataset and across datasets: does any identity, source video (group) or
near-duplicate crop appear in more than one of train / val / test? FF++'s official split is disjoint by sequence
pair, not by person: seven YouTube videos contribute sequences to two splits (``group_id`` = YouTube id). Celeb-DF's
test list shares identities with the rest. DeeperForensics' reals are FF++ videos.

``identity_split`` builds a re-split in which no identity and no group spans two splits: videos are linked when
they share an identity or a group (union-find; a fake links its target and source identities), and each connected
component goes to one split, chosen by a stable hash so the result does not depend on row order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


# -- identity-disjoint re-split ------------------------------------------------------------------------------------
class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _keys(row: dict[str, Any]) -> list[str]:
    keys = [f"id:{i}" for i in (row.get("identity_ids") if row.get("identity_ids") is not None else [])]
    if row.get("group_id"):
        keys.append(f"group:{row['dataset']}:{row['group_id']}")
    return keys


def identity_components(videos: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(dataset, video_id) -> component key: videos that share any identity or group are in one component."""
    uf = _UnionFind()
    rows = videos[["dataset", "video_id", "identity_ids", "group_id"]].to_dict("records")
    for r in rows:
        v = f"video:{r['dataset']}/{r['video_id']}"
        uf.find(v)
        for k in _keys(r):
            uf.union(v, k)
    return {(r["dataset"], r["video_id"]): uf.find(f"video:{r['dataset']}/{r['video_id']}") for r in rows}


def identity_split(videos: pd.DataFrame, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> dict[tuple[str, str], str]:
    """(dataset, video_id) -> train/val/test such that no identity or group spans two splits.

    Each connected component of shared identities/groups is assigned whole, by a stable hash of its key (and
    ``seed``) mapped onto the cumulative ``ratios``. With few, large components the realised ratios can differ
    from the asked ones: that is the price of disjointness, and :func:`audit` shows it."""
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers, got {ratios}")
    comp = identity_components(videos)
    cum = np.cumsum(np.asarray(ratios, dtype=float) / sum(ratios))
    out: dict[tuple[str, str], str] = {}
    cache: dict[str, str] = {}
    for key, c in comp.items():
        if c not in cache:
            h = int.from_bytes(hashlib.sha1(f"{seed}:{c}".encode()).digest()[:8], "big") / 2 ** 64
            cache[c] = SPLITS[int(np.searchsorted(cum, h, side="right").clip(0, 2))]
        out[key] = cache[c]
    return out


# -- perceptual hashes -------------------------------------------------------------------------------------------------
def dhash(rgb: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash of an image (robust to re-encoding and small shifts)."""
    import cv2

    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    s = cv2.resize(g, (size + 1, size), interpolation=cv2.INTER_AREA)
    bits = (s[:, 1:] > s[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def near_duplicates(hashes: dict[str, int], max_distance: int = 4) -> list[tuple[str, str, int]]:
    """Pairs of keys whose hashes differ in at most ``max_distance`` bits. Candidate pairs come from
    ``max_distance + 1`` bands of the hash (pigeonhole: two hashes that close agree exactly on one band)."""
    keys = list(hashes)
    bands = max_distance + 1
    width = 64 // bands
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        h = hashes[k]
        for b in range(bands):
            buckets[(b, (h >> (b * width)) & ((1 << width) - 1))].append(i)
    seen: set[tuple[int, int]] = set()
    out = []
    for members in buckets.values():
        if len(members) < 2 or len(members) > 5000:
            continue
        for a_i in range(len(members)):
            for b_i in range(a_i + 1, len(members)):
                a, b = members[a_i], members[b_i]
                if (a, b) in seen:
                    continue
                seen.add((a, b))
                d = bin(hashes[keys[a]] ^ hashes[keys[b]]).count("1")
                if d <= max_distance:
                    out.append((keys[a], keys[b], d))
    return out


# -- the audit ---------------------------------------------------------------------------------------------------------
@dataclass
class LeakTable:
    kind: str  # identity | group | near_duplicate
    scope: str  # a dataset name, or "cross-dataset"
    count: int
    examples: list[dict[str, Any]] = field(default_factory=list)


def _straddling(videos: pd.DataFrame, key: str, explode: bool) -> pd.DataFrame:
    v = videos[["dataset", "video_id", "split", key]].dropna(subset=["split"])
    if explode:
        v = v.explode(key)
    v = v.dropna(subset=[key])
    g = v.groupby(key).agg(splits=("split", lambda s: sorted(set(s))), datasets=("dataset", lambda s: sorted(set(s))),
                           videos=("video_id", lambda s: sorted(set(s))[:6]), n_videos=("video_id", "nunique"))
    g = g[g["splits"].map(len) > 1]
    return g.reset_index().rename(columns={key: "key"})


def audit(videos: pd.DataFrame, crop_hashes: pd.DataFrame | None = None, max_examples: int = 20,
          max_distance: int = 4) -> dict[str, Any]:
    """Leaks across train/val/test, per dataset and across datasets.

    ``videos``: one row per video with dataset, video_id, split, identity_ids, group_id.
    ``crop_hashes``: optional, columns sample_id, dataset, video_id, split, phash (int) for the near-duplicate
    check. Returns a JSON-serialisable dict (see :func:`format_audit`)."""
    out: dict[str, Any] = {"datasets": {}, "cross_dataset": {}}
    for ds, v in videos.groupby("dataset"):
        entry = {"videos": int(len(v)), "split_counts": {k: int(n) for k, n in v["split"].fillna("none")
                                                                                .value_counts().items()}}
        for kind, key, explode in (("identity", "identity_ids", True), ("group", "group_id", False)):
            t = _straddling(v, key, explode)
            entry[kind] = {"count": int(len(t)), "examples": _examples(t, max_examples)}
        out["datasets"][ds] = entry
    # across datasets: an identity or group in train of one dataset and val/test of another
    t = _straddling(videos, "identity_ids", True)
    t = t[t["datasets"].map(len) > 1]
    out["cross_dataset"]["identity"] = {"count": int(len(t)), "examples": _examples(t, max_examples)}
    if crop_hashes is not None and len(crop_hashes):
        ch = crop_hashes.dropna(subset=["split"]).reset_index(drop=True)
        hashes = {str(i): int(h) for i, h in enumerate(ch["phash"])}
        pairs = near_duplicates(hashes, max_distance)
        rows = []
        for a, b, d in pairs:
            ra, rb = ch.iloc[int(a)], ch.iloc[int(b)]
            if ra["split"] != rb["split"] and ra["video_id"] != rb["video_id"]:
                rows.append({"a": ra["sample_id"], "b": rb["sample_id"], "splits": [ra["split"], rb["split"]],
                             "datasets": sorted({ra["dataset"], rb["dataset"]}), "distance": d})
        out["near_duplicates"] = {"count": len(rows), "checked_crops": int(len(ch)),
                                  "max_distance": max_distance, "examples": rows[:max_examples]}
    return out


def _examples(t: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    t = t.sort_values("n_videos", ascending=False).head(n)
    return [{"key": str(r.key), "splits": list(r.splits), "datasets": list(r.datasets), "videos": list(r.videos)}
            for r in t.itertuples()]


def format_audit(rep: dict[str, Any]) -> str:
    lines = []
    for ds, e in rep["datasets"].items():
        sc = ", ".join(f"{k} {v}" for k, v in e["split_counts"].items())
        lines.append(f"{ds}: {e['videos']} videos ({sc})")
        for kind in ("identity", "group"):
            k = e[kind]
            what = "identities" if kind == "identity" else "source groups (e.g. FF++ YouTube ids)"
            lines.append(f"  {what} in more than one split: {k['count']}")
            for ex in k["examples"][:10]:
                lines.append(f"    {ex['key']}: {' / '.join(ex['splits'])}  e.g. {', '.join(ex['videos'][:4])}")
    x = rep["cross_dataset"]["identity"]
    lines.append(f"cross-dataset: identities in different splits of different datasets: {x['count']}")
    for ex in x["examples"][:10]:
        lines.append(f"    {ex['key']}: {' / '.join(ex['splits'])} in {', '.join(ex['datasets'])}")
    nd = rep.get("near_duplicates")
    if nd is not None:
        lines.append(f"near-duplicate crops across splits (dHash distance <= {nd['max_distance']}, "
                     f"{nd['checked_crops']} crops checked): {nd['count']}")
        for ex in nd["examples"][:10]:
            lines.append(f"    {ex['a']} ({ex['splits'][0]}) ~ {ex['b']} ({ex['splits'][1]}), distance "
                         f"{ex['distance']}")
    else:
        lines.append("near-duplicate crops: not checked (--no-hashes)")
    return "\n".join(lines)


def crop_hashes(corpus, per_video: int = 4, progress: bool = True) -> pd.DataFrame:
    """dHash of up to ``per_video`` crops of each video (evenly spread), read in shard order."""
    from tqdm import tqdm

    m = corpus.metadata(["sample_id", "dataset", "video_id", "split", "frame_index"])
    if m.empty:
        return m.assign(phash=pd.Series(dtype="uint64"))
    m = m.sort_values(["dataset", "video_id", "frame_index"]).reset_index(drop=True)
    g = m.groupby(["dataset", "video_id"], sort=False)
    pos, n = g.cumcount().to_numpy(), g["sample_id"].transform("size").to_numpy()
    k = np.minimum(per_video, n)
    # evenly spread picks: position p is taken when it is the rounded i-th of k points over [0, n-1]
    step = np.where(k > 1, (n - 1) / np.maximum(k - 1, 1), 0)
    nearest = np.where(k > 1, np.round(np.round(pos / np.where(step > 0, step, 1)) * step), 0)
    pick = m[(nearest == pos) & (pos <= n - 1)]
    hashes, ids = [], []
    for rec, img in tqdm(corpus.crops(pick), total=len(pick), desc="hashing crops", disable=not progress):
        ids.append(rec["sample_id"])
        hashes.append(dhash(img))
    h = pd.DataFrame({"sample_id": ids, "phash": np.array(hashes, dtype=np.uint64)})
    return pick.drop(columns=["_file", "_row"]).merge(h, on="sample_id")


def write_scheme(root, name: str, assign: dict[tuple[str, str], str]) -> Path:
    """Store a corpus-level re-split as ``<corpus>/splits/<name>.parquet`` (dataset, video_id, split); readers
    use it with ``Corpus.select(split_scheme=name)``. The corpus writes it
    (:func:`dfkit.corpus.writer.write_split_scheme`)."""
    from dfkit.corpus.writer import write_split_scheme

    return write_split_scheme(root, name, assign)
