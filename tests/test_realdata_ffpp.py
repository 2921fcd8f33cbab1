"""Integration: the real FaceForensics++ c23 sample clips in ../shared/realdata (skipped when absent)."""

from __future__ import annotations

import dfkit.corpus
from dfkit.ingest.base import create_adapter
from dfkit.ingest.engine import IngestParams, run_ingest
from tests.conftest import need_realdata


def test_ingest_real_ffpp_clips(tmp_path):
    root = need_realdata("ffpp_icpr2020dfdc")
    adapter = create_adapter("ffpp", root)
    s = run_ingest(adapter, tmp_path / "c", IngestParams(frames=8, size=128), workers=2, progress=False,
                   log=lambda m: None)
    assert s.listed == 7 and s.status == {"ok": 7}
    c = dfkit.corpus.open(tmp_path / "c")
    m = c.metadata()
    v = c.videos().set_index("video_id")
    assert set(m["method"]) == {"original", "Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"}
    assert set(m[m["label"] == "real"]["method"]) == {"original"}
    assert set(m[m["label"] == "fake"]["method_canonical"]) == {"deepfakes", "face2face", "faceswap",
                                                                "neuraltextures"}
    # nearly every sampled frame has a crop
    assert v["n_crops"].sum() >= 0.95 * v["n_sampled"].sum()
    # fakes whose original is here are paired with it, on the same frames and boxes
    pairs = {"Deepfakes/c23/519_515": "original/c23/519", "FaceSwap/c23/634_660": "original/c23/634",
             "NeuralTextures/c23/004_982": "original/c23/004"}
    for fake, orig in pairs.items():
        f = m[m["video_id"] == fake].set_index("frame_index")
        o = m[m["video_id"] == orig].set_index("frame_index")
        assert (f["pair_video_id"] == orig).all()
        assert set(f.index) <= set(o.index) and len(f) >= 7
        assert all(list(f.loc[i, "crop_box"]) == list(o.loc[i, "crop_box"]) for i in f.index)
    # Face2Face's original (750) is not in the sample: cropped on its own detections
    f2f = m[m["method"] == "Face2Face"]
    assert f2f["pair_video_id"].isna().all() and (f2f["box_source"] != "paired").all()
    # labels and video facts as SOURCES.md gives them
    assert v.loc["Face2Face/c23/750_743", "width"] == 1920 and v.loc["original/c23/519", "n_frames"] == 751
    assert v.loc["Deepfakes/c23/519_515", "split"] == "train"
    assert v.loc["NeuralTextures/c23/004_982", "split"] == "val"
    assert v.loc["FaceSwap/c23/634_660", "split"] == "test"
    assert '"source_group_id"' in v.loc["Deepfakes/c23/519_515", "extra"]  # adapter facts kept as JSON
