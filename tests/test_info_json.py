"""``dfkit info --json``: the same facts as the text report, machine-readable, checked against the corpus itself."""

from __future__ import annotations

import json
import shutil

from tests.test_train_cli import demo_corpus, one_thread, run_cli  # noqa: F401 - fixtures


def test_info_json_counts_match_the_corpus(demo_corpus, capsys):
    import dfkit.corpus

    code, out, err = run_cli(["info", "--corpus", demo_corpus, "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    c = dfkit.corpus.open(demo_corpus)
    meta, videos = c.metadata(), c.videos()
    assert d["crops"] == len(meta) == sum(r["crops"] for r in d["counts"])
    got = {(r["dataset"], r["method"], r["split"]): r["crops"] for r in d["counts"]}
    want = meta.groupby(["dataset", "method", "split"]).size().to_dict()
    assert got == want
    assert d["video_status"] == {"demo": videos["status"].value_counts().to_dict()}
    assert d["videos_with_crops"] == int(videos["status"].isin(["ok", "partial"]).sum())
    assert d["quality"] is None and d["damaged"] == []  # the fixture has no quality shard
    assert d["n_errors"] == len(c.errors()) and "errors" not in d
    # the text report says the same total
    code, text, _ = run_cli(["info", "--corpus", demo_corpus], capsys)
    assert f"total: {d['videos_with_crops']} videos with crops, {d['crops']} crops" in text


def test_info_json_errors_list_every_entry_and_damaged_shards(demo_corpus, tmp_path, capsys):
    import dfkit.corpus

    corpus = tmp_path / "corpus"
    shutil.copytree(demo_corpus, corpus)
    errs = dfkit.corpus.open(corpus).errors()
    shard = sorted((corpus / "crops").glob("*.parquet"))[0]
    shard.write_bytes(b"not parquet")  # a damaged shard: left out of the counts, listed
    code, out, err = run_cli(["info", "--corpus", corpus, "--json", "--errors"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert len(d["errors"]) == len(errs) == d["n_errors"]
    assert {(e["dataset"], e["video_path"]) for e in d["errors"]} == set(zip(errs["dataset"], errs["video_path"]))
    assert [x["shard"] for x in d["damaged"]] == [str(shard)] and d["damaged"][0]["recover"]
    assert d["crops"] < len(dfkit.corpus.open(demo_corpus).metadata())


def test_info_json_on_an_empty_and_a_missing_corpus(tmp_path, capsys):
    from dfkit.corpus.store import write_manifest

    (tmp_path / "c").mkdir()
    write_manifest(tmp_path / "c", {})
    code, out, err = run_cli(["info", "--corpus", tmp_path / "c", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["crops"] == 0 and d["counts"] == [] and d["videos_with_crops"] == 0
    code, out, err = run_cli(["info", "--corpus", tmp_path / "nothing-here", "--json"], capsys)
    assert code == 2 and "no corpus at" in err and len(err.strip().splitlines()) == 1 and out == ""
