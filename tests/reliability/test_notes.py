"""An ingested video's note (a fake not paired with its original, so cut on its own boxes) reaches the user: the
ingest summary, ``dfkit info`` (a count) and ``dfkit info --errors`` (listed), not only the videos table."""

from __future__ import annotations

from dfkit.corpus.reader import Corpus
from dfkit.report import corpus_info_text
from dfkit.services import ingest_summary_lines
from tests.test_train_cli import demo_corpus  # noqa: F401 - fixture


def test_not_paired_notes_are_shown(demo_corpus, monkeypatch):
    real_videos = Corpus.videos

    def videos(self, *a, **k):
        v = real_videos(self, *a, **k).copy()
        i = v.index[v["status"] == "ok"][0]
        v.loc[i, "reason"] = "not paired: frame size 640x480 differs from the original's 1280x720\nforged line"
        return v

    monkeypatch.setattr(Corpus, "videos", videos)
    short = corpus_info_text(demo_corpus)
    assert "1 ingested videos carry a note" in short
    full = corpus_info_text(demo_corpus, errors=True)
    assert "notes (1, ingested):" in full and "not paired: frame size 640x480" in full
    assert "forged line" in full and "\nforged line" not in full  # one line per note


def test_the_ingest_summary_lists_notes():
    from types import SimpleNamespace

    s = SimpleNamespace(dataset="ffpp", listed=2, skipped=0, processed=2, seconds=1.0, crops=8, ignored_files=0,
                        status={"ok": 2}, errors=[{"video_path": "a/b.mp4", "status": "ok", "stage": None,
                                                   "reason": "not paired: frame size differs"}])
    lines = ingest_summary_lines(s, "corpus")
    assert any(ln.strip() == "ok       a/b.mp4: not paired: frame size differs" for ln in lines), lines
