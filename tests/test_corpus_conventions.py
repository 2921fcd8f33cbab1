"""What ``dfkit.corpus`` alone spells: the crop codec, the column and metadata conventions, the quality-shard and
split-scheme writers, and the one way a split is applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dfkit.corpus import schema
from dfkit.corpus.codec import CropDecodeError, decode_crop, encode_crop, try_decode_crop
from dfkit.corpus.reader import Corpus, apply_split
from dfkit.corpus.store import CorpusLock, Shard
from dfkit.corpus.writer import QualityWriter, write_split_scheme
from dfkit.errors import CorpusLockedError, DfkitError


def test_codec_round_trips_and_one_contract_for_bad_bytes():
    img = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    for enc, fmt in (("png", "png"), ("webp", "webp")):
        data, got = encode_crop(img, enc)
        assert got == fmt and np.array_equal(decode_crop(data), img)
    for bad in (b"", None, b"not an image at all"):
        with pytest.raises(CropDecodeError, match="undecodable crop bytes"):
            decode_crop(bad)
        assert try_decode_crop(bad) is None
    # one error for callers of either kind: a DfkitError (one line in the CLI) and the ValueError it was before
    assert issubclass(CropDecodeError, DfkitError) and issubclass(CropDecodeError, ValueError)
    with pytest.raises(ValueError, match="unknown crop encoding"):
        encode_crop(img, "gif")


def test_the_codec_and_the_crop_geometry_have_one_owner():
    """corpus.codec and corpus.geometry define them; ingest (and everything else) imports them from there."""
    import dfkit
    from dfkit.corpus import geometry

    defined = {}
    for p in Path(dfkit.__file__).parent.rglob("*.py"):
        for name in ("decode_crop", "encode_crop", "crop_square", "square_crop_box"):
            if f"def {name}(" in p.read_text():
                defined.setdefault(name, []).append(p.relative_to(Path(dfkit.__file__).parent).as_posix())
    assert defined == {"decode_crop": ["corpus/codec.py"], "encode_crop": ["corpus/codec.py"],
                       "crop_square": ["corpus/geometry.py"], "square_crop_box": ["corpus/geometry.py"]}, defined
    assert geometry.crop_square(np.zeros((4, 4, 3), np.uint8), np.array([0, 0, 4, 4]), 8).shape == (8, 8, 3)


def test_column_and_path_conventions():
    assert schema.quality_column("sharpness") == "q_sharpness"
    assert schema.raw_column("sharpness") == "q_sharpness_raw"
    assert schema.extra_column("pose", "yaw") == "q_pose_yaw"
    cols = ["q_face_size", "q_face_size_raw", "q_pose", "q_pose_raw", "q_pose_yaw", "q_errors", "quality"]
    assert [schema.score_metric(c, cols) for c in cols] == ["face_size", None, "pose", None, None, None, None]
    assert schema.score_metric("q_face_size") == "face_size" and not schema.is_quality_column("quality")
    assert schema.sample_id("ffpp", "000_003", 7) == "ffpp/000_003/000007"
    assert str(schema.split_path("/c", "identity")) == "/c/splits/identity.parquet"
    v = pd.DataFrame({"status": list(schema.VIDEO_STATUSES)})
    assert schema.usable(v)["status"].tolist() == ["ok", "partial"] == list(schema.USABLE_STATUSES)
    assert schema.META_QUALITY_WEIGHTS == b"dfkit.quality.weights"


def test_quality_writer_holds_the_lock_and_writes_atomically(tmp_path):
    root = tmp_path / "c"
    (root / "quality").mkdir(parents=True)
    (root / "quality" / ".tmp-part-000001-aaaaaaaa.parquet").write_bytes(b"half")
    orphan = root / "quality" / "part-000009-bbbbbbbb.parquet"
    pq.write_table(pa.table({"sample_id": ["x"]}), orphan)
    crops = Shard(1, "aaaaaaaa", root / "crops" / "part-000001-aaaaaaaa.parquet")
    with QualityWriter(root) as qw:
        assert not list((root / "quality").glob(".tmp-*"))  # an interrupted run's temp files went
        with pytest.raises(CorpusLockedError):
            with CorpusLock(root):
                pass
        assert qw.remove_orphans([crops]) == [orphan] and not orphan.exists()
        p = qw.write(crops, pa.table({"sample_id": ["a", "b"]}))
        assert p == root / "quality" / "part-000001-aaaaaaaa.parquet"
        assert qw.shards() == {"000001-aaaaaaaa": p}
    assert pq.read_table(p)["sample_id"].to_pylist() == ["a", "b"]
    with CorpusLock(root):  # released
        pass


def test_split_scheme_written_by_the_corpus_and_applied_one_way(tmp_path):
    root = tmp_path / "c"
    (root / "videos").mkdir(parents=True)
    path = write_split_scheme(root, "mine", {("d", "v2"): "test", ("d", "v1"): "train"})
    assert path == schema.split_path(root, "mine") and schema.has_split_scheme(root, "mine")
    assert not schema.has_split_scheme(root, "official") and not list(path.parent.glob(".tmp-*"))
    s = Corpus(root).split_scheme("mine")
    assert s.to_dict("records") == [{"dataset": "d", "video_id": "v1", "split": "train"},
                                    {"dataset": "d", "video_id": "v2", "split": "test"}]
    with pytest.raises(DfkitError, match="no split scheme 'nope'"):
        Corpus(root).split_scheme("nope")
    crops = pd.DataFrame({"dataset": ["d"] * 3, "video_id": ["v1", "v1", "v2"], "split": ["val"] * 3})
    out = apply_split(crops, s)
    assert out["split"].tolist() == ["train", "train", "test"] and out["split_official"].tolist() == ["val"] * 3
    with pytest.raises(DfkitError, match="span several splits"):
        apply_split(pd.DataFrame({"dataset": ["d", "d"], "video_id": ["v", "v"], "split": ["train", "test"]}), None)
    # the training side applies it the same way (no copy of its own)
    from dfkit.train.data import apply_split as train_apply_split

    assert train_apply_split is apply_split
