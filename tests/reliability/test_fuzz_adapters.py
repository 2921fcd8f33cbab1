"""Metadata fuzzing of every adapter's parsers (issue 13, "metadata fuzzing").

Each test builds a minimal valid layout of one dataset in a fresh temporary folder and replaces its metadata file(s)
with fuzzed content: arbitrary bytes (invalid UTF-8 included), arbitrary text, and structurally plausible fuzz (JSON
values with odd keys, CSV / list rows with random fields, missing columns, quotes, delimiters, 1 MB fields). Whatever
the input, listing the dataset gives records (each fine or carrying a ``problem``) or raises one
:class:`~dfkit.errors.DfkitError` whose message is one line, within a bounded time: never a traceback, never a hang.
The engine's listing (``_listing``) raises nothing but DfkitError / OSError.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from dfkit.errors import DfkitError
from dfkit.ingest import engine
from dfkit.ingest.base import VideoRecord, create_adapter
from dfkit.paths import manifests_dir

#: seconds one listing may take before it counts as a hang
HANG_S = 10
#: examples per test (keep the whole file well under a minute; DFKIT_FUZZ_EXAMPLES=500 for a deeper search)
N = int(os.environ.get("DFKIT_FUZZ_EXAMPLES", "25"))

FUZZ = settings(max_examples=N, deadline=5000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
MB = 1 << 20


# -- the check ----------------------------------------------------------------------------------------------------
class _Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    def on_alarm(signum, frame):
        raise _Hang(f"listing took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _one_line(e: DfkitError) -> None:
    msg = str(e)
    assert msg, f"{type(e).__name__} with an empty message"
    assert "\n" not in msg and "\r" not in msg, f"message is not one line: {msg!r}"


def check(name: str, root: Path, **opts) -> list[VideoRecord] | None:
    """List ``root`` with adapter ``name`` (directly and through the engine): records, or None for one clear
    DfkitError. Anything else fails the test."""
    with _time_limit(HANG_S):
        try:
            recs = list(create_adapter(name, root, **opts).videos())
        except DfkitError as e:
            _one_line(e)
            recs = None
        try:
            engine._listing(create_adapter(name, root, **opts))
        except DfkitError as e:
            _one_line(e)
        except OSError:
            pass
    for r in recs or []:
        assert isinstance(r, VideoRecord), r
        assert r.problem is None or (isinstance(r.problem, str) and r.problem), r
    return recs


@contextlib.contextmanager
def tree(*rels: str):
    """A fresh dataset root holding one-byte stand-ins at ``rels`` (adapters never decode)."""
    d = tempfile.mkdtemp(prefix="dfkit-fuzz-")
    try:
        root = Path(d) / "root"
        root.mkdir()
        for rel in rels:
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\x00")
        yield root
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write(path: Path, content: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    path.write_bytes(content)


# -- strategies ---------------------------------------------------------------------------------------------------
ODD = ["../x.mp4", "../../etc/passwd", "/etc/passwd", "/abs/v.mp4", "a\x00b.mp4", "a\nb.mp4", "a\rb", "\t", "",
       " ", ".", "..", "C:\\x.mp4", "\\\\server\\x", "~/x.mp4", "x" * 300, "é.mp4", "\ufeff", "\udcff",
       "good.mp4", "a.mp4", "0", "1", "-1", "1e9", "nan", "REAL", "FAKE", "real", "fake", "train", "test", "val"]
odd_text = st.sampled_from(ODD) | st.text(max_size=20)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | odd_text
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(odd_text, c, max_size=4),
                           max_leaves=15)
raw_bytes = st.binary(max_size=1500)
raw_text = st.text(max_size=1500)
field = odd_text | st.text(alphabet=',;\t|"\' \n\r\x00abc01', max_size=12)
rows = st.lists(st.lists(field, max_size=12), max_size=12)

DEEP = "[" * 100_000 + "]" * 100_000  # RecursionError bait
LONG = "x" * (MB + 10)
LONG_NAME = "n" * 300 + ".mp4"  # longer than a file name may be (ENAMETOOLONG when looked up)
NOT_UTF8 = b"1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_\xff\xfe.mp4\n"


def json_docs():
    """Serialised JSON values (some under a top-level object with plausible entry keys)."""
    entry = st.fixed_dictionaries({}, optional={"label": json_values, "original": json_values, "split": json_values,
                                                "set": json_values, "target_id": json_values,
                                                "swapped_id": json_values, "augmentations": json_values,
                                                "source_video": json_values})
    keyed = st.dictionaries(odd_text | st.sampled_from(["original_videos/1/1_a_000.mp4",
                                                        "method_A/1/1_a/2_1_a_000.mp4"]),
                            entry | json_values, max_size=5)
    return (keyed | json_values).map(lambda v: json.dumps(v, allow_nan=True))


def delimited(delims: str = ",;\t| "):
    """CSV-ish / list-ish text: random rows joined by a random delimiter, fields sometimes quoted."""
    def render(rs, d, quote, eol):
        q = (lambda f: '"' + f.replace('"', '""') + '"') if quote else (lambda f: f)
        return eol.join(d.join(q(f) for f in r) for r in rs)
    return st.builds(render, rows, st.sampled_from(list(delims)), st.booleans(), st.sampled_from(["\n", "\r\n", "\r"]))


def contents(plausible):
    return raw_bytes | raw_text | plausible


# -- DFDC ---------------------------------------------------------------------------------------------------------
@FUZZ
@given(contents(json_docs()))
@example(DEEP)
@example(b"\xff\xfe{}")
@example('{"good.mp4": {"label": "FAKE", "original": ["x"]}, "../up.mp4": {"label": "REAL"}}')
@example('{"\\u0000.mp4": {"label": "REAL"}, "/abs.mp4": {"label": "FAKE", "original": "/etc/passwd"}}')
@example(json.dumps({LONG_NAME: {"label": "REAL"}, "good.mp4": {"label": "FAKE", "original": LONG_NAME}}))
@example(json.dumps({"good.mp4": {"label": "REAL"}, "": {"label": "REAL"}, ".": {"label": "FAKE"}}))
def test_dfdc_metadata_json(doc):
    with tree("dfdc_train_part_0/good.mp4") as root:
        write(root / "dfdc_train_part_0" / "metadata.json", doc)
        check("dfdc", root)


@FUZZ
@given(contents(st.builds(lambda h, b: h + "\n" + b, st.sampled_from(["filename,label", "label,filename", "filename",
                                                                      ""]), delimited(","))))
@example("filename,label\n" + LONG + ",1\n")
@example(b"filename,label\n\xff.mp4,1\n")
@example('filename,label\n"unterminated,1\n')
@example("filename,label\na.mp4\n,\n")
@example(f"filename,label\n{LONG_NAME},0\na.mp4,inf\na.mp4,1e999\n")
def test_dfdc_labels_csv(doc):
    with tree("test/a.mp4", "dfdc_train_part_0/good.mp4") as root:
        write(root / "dfdc_train_part_0" / "metadata.json", '{"good.mp4": {"label": "REAL"}}')
        write(root / "test" / "labels.csv", doc)
        check("dfdc", root)


# -- DFDC preview -------------------------------------------------------------------------------------------------
@FUZZ
@given(contents(json_docs()))
@example(DEEP)
@example(b"\x80")
@example('{"original_videos/1/1_a_000.mp4": {"label": "real", "augmentations": {"a": 1}, "target_id": [1]}}')
@example('{"method_A/1/1_a/2_1_a_000.mp4": {"label": "fake", "source_video": ["x"], "set": {}}, "": {}}')
@example('{"/etc/passwd": {"label": "real"}, "original_videos/../../x.mp4": 1, "original_videos": []}')
@example(json.dumps({"original_videos/" + LONG_NAME: {"label": "real"}, "original_videos/": {}, "": {}, ".": 1}))
@example('{"method_A/1/1_a/2_1_a_000.mp4": {"label": "fake", "augmentations": 5, "target_id": 1e308}}')
def test_dfdcp_dataset_json(doc):
    with tree("original_videos/1/1_a_000.mp4", "method_A/1/1_a/2_1_a_000.mp4") as root:
        write(root / "dataset.json", doc)
        check("dfdcp", root)


# -- Celeb-DF -----------------------------------------------------------------------------------------------------
celeb_lines = st.lists(st.tuples(st.sampled_from(["0", "1", "2", "", "x"]),
                                 st.sampled_from(["Celeb-real/id0_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4",
                                                  "YouTube-real/00000.mp4", "Nope/x.mp4", "../x.mp4"]) | field),
                       max_size=10).map(lambda ls: "\n".join(f"{a} {b}" for a, b in ls))


@FUZZ
@given(contents(celeb_lines))
@example(NOT_UTF8)
@example("1 Celeb-real/" + LONG + ".mp4\n")
@example("1 Celeb-real/id0_0000.mp4\n0 /etc/passwd/x.mp4\n1 Celeb-real/\x00.mp4\n")
def test_celebdf_test_list(doc):
    with tree("Celeb-real/id0_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4") as root:
        write(root / "List_of_testing_videos.txt", doc)
        check("celebdf", root)


# -- FaceForensics++ (its split JSON and conversion_dict.json are shipped manifests) -----------------------------
@contextlib.contextmanager
def ffpp_manifests(which: str, doc):
    from dfkit.ingest.adapters import ffpp

    d = Path(tempfile.mkdtemp(prefix="dfkit-fuzz-man-"))
    try:
        shutil.copytree(manifests_dir() / "ffpp", d / "ffpp")
        write(d / "ffpp" / which, doc)
        ffpp.official_splits.cache_clear()
        ffpp.youtube_ids.cache_clear()
        with mock.patch.object(ffpp, "manifests_dir", lambda: d):
            yield
    finally:
        ffpp.official_splits.cache_clear()
        ffpp.youtube_ids.cache_clear()
        shutil.rmtree(d, ignore_errors=True)


@FUZZ
@given(st.sampled_from(["splits/train.json", "splits/test.json", "conversion_dict.json"]), contents(json_docs()))
@example("splits/train.json", DEEP)
@example("splits/val.json", b"\xff")
@example("splits/train.json", '[["000", 1], [null], 5, "abc"]')
@example("conversion_dict.json", '{"000": 5, "001": null, "002": ["x"]}')
def test_ffpp_split_json(which, doc):
    with tree("original_sequences/youtube/c23/videos/000.mp4",
              "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4") as root, ffpp_manifests(which, doc):
        check("ffpp", root)


# -- CSV (your own data) ------------------------------------------------------------------------------------------
csv_docs = st.builds(lambda h, b: h + "\n" + b,
                     st.sampled_from(["path,label", "path,label,method,split,identity,group,video_id,pair",
                                      "label,path", "path", "path;label", "path\tlabel", ""]),
                     delimited())


@FUZZ
@given(contents(csv_docs))
@example("path,label\n" + LONG + ".mp4,real\n")
@example("path,label\na.mp4," + LONG + "\n")
@example(b"path,label\n\xff\xfe.mp4,real\n")
@example('path,label\n"a.mp4\n,real\n"b,fake')
@example('path,label,pair,video_id\na.mp4,real,a,a\nb.mp4,fake,a,a\n')
@example('path,label\n/etc/passwd,real\n../x.mp4,fake\na\x00b.mp4,real\n')
@example(f"path,label\n{LONG_NAME},real\na.mp4,fake\n")
@example("path,label,video_id\na.mp4,real,x\nb.mp4,fake,x\n")
def test_csv_labels(doc):
    with tree("a.mp4", "b.mp4") as root:
        write(root / "labels.csv", doc)
        check("csv", root)


# -- ForgeryNet ---------------------------------------------------------------------------------------------------
fn_lines = st.lists(st.lists(st.sampled_from(["img/a.jpg", "vid/v", "0", "1", "2", "15", "-1", "99", "fake", "real",
                                              "3", "1000000000000"]) | field, max_size=12),
                    max_size=10).map(lambda ls: "\n".join(" ".join(x) for x in ls))


@FUZZ
@given(contents(fn_lines))
@example("img/a.jpg 1 1 " + "9" * 5000 + "\n")
@example("999999999999 vid/v 0 1 fake 1 1 1\n")
@example(b"img/a.jpg 1 1 3\n\xff\xfe 0 0 0\n")
@example("../../etc/passwd 0 0 0\n/etc/passwd 1 1 3\nimg/a.jpg 1 1 3\n")
@example("img/" + LONG + " 0 0 0\n")
@example(f"img/a.jpg 1 1 3\nimg/{LONG_NAME} 0 0 0\n")
def test_forgerynet_lists(doc):
    with tree("img/a.jpg", "vid/v/0001.png") as root:
        write(root / "train_list.txt", doc)
        check("forgerynet", root)


# -- KoDF ---------------------------------------------------------------------------------------------------------
kodf_docs = st.builds(lambda h, b: h + "\n" + b,
                      st.sampled_from(["영상ID,타겟영상,변조모델", "영상ID", "영상ID,참가자ID", "a,b", ""]), delimited(","))


@FUZZ
@given(st.sampled_from(["원본영상_training_메타데이터.csv", "변조영상_training_메타데이터.csv"]), contents(kodf_docs))
@example("원본영상_training_메타데이터.csv", "영상ID\n" + LONG + "\n")
@example("변조영상_training_메타데이터.csv", b"\xff\xff\xff")
@example("변조영상_training_메타데이터.csv", "영상ID,타겟영상,변조모델\nx.mp4\n")
@example("원본영상_training_메타데이터.csv", "영상ID\n../../x.mp4\n/etc/passwd\n")
@example("변조영상_training_메타데이터.csv", f"영상ID,타겟영상,변조모델\n{LONG_NAME},r1.mp4,dfl,extra,cells\n")
def test_kodf_csvs(name, doc):
    with tree("원본영상/01/r1.mp4", "변조영상/dfl/f1.mp4") as root:
        write(root / "원본영상_training_메타데이터.csv", "영상ID\nr1.mp4\n")
        write(root / "변조영상_training_메타데이터.csv", "영상ID,타겟영상,변조모델\nf1.mp4,r1.mp4,dfl\n")
        write(root / name, doc)
        check("kodf", root)


# -- FakeAVCeleb --------------------------------------------------------------------------------------------------
fav_docs = st.builds(lambda h, b: h + "\n" + b,
                     st.sampled_from(["source,target1,target2,method,category,type,race,gender,path,",
                                      ",source,target1,target2,method,category,type,race,gender,path,", "source", ""]),
                     st.lists(st.lists(st.sampled_from(["id0", "-", "A", "B", "C", "D", "rtvc", "fsgan",
                                                        "RealVideo-RealAudio", "FakeVideo-FakeAudio",
                                                        "FakeAVCeleb/RealVideo-RealAudio/African/men/id0", "a.mp4",
                                                        "../../x", "/etc"]) | field, max_size=12),
                              max_size=8).map(lambda rs: "\n".join(",".join(r) for r in rs)))


@FUZZ
@given(contents(fav_docs))
@example("source,target1,target2,method,category,type,race,gender,path,\n"
         "id0,-,-,real,A,RealVideo-RealAudio,African,men,00000.mp4,FakeAVCeleb/RealVideo-RealAudio/African/men/id0\n"
         "id0,-,-,real,Q,Nope,African,men,x.mp4,elsewhere\n")
@example("source,target1\n" + "a," * 5 + LONG + "\n")
@example(b"source,target1\n\xff")
@example("source,target1,target2,method,category,type,race,gender,path,\n"
         f"id0,-,-,real,A,RealVideo-RealAudio,African,men,{LONG_NAME},FakeAVCeleb/RealVideo-RealAudio/African/men/id0\n")
def test_fakeavceleb_meta_data_csv(doc):
    with tree("RealVideo-RealAudio/African/men/id0/00000.mp4") as root:
        write(root / "meta_data.csv", doc)
        check("fakeavceleb", root)


# -- DeeperForensics ----------------------------------------------------------------------------------------------
@FUZZ
@given(st.sampled_from(["lists/splits/train.txt", "lists/splits/test.txt",
                        "lists/manipulated_videos_distortions_meta/manipulated_videos_end_to_end_meta.txt"]),
       contents(delimited(" \t")))
@example("lists/splits/train.txt", b"\xff\xfe000_M101.mp4\n")
@example("lists/splits/val.txt", LONG)
@example("lists/manipulated_videos_distortions_meta/manipulated_videos_end_to_end_meta.txt", b"000_M101 \xff\n")
def test_deeperforensics_lists(which, doc):
    with tree("manipulated_videos/end_to_end/000_M101.mp4") as root:
        write(root / which, doc)
        check("deeperforensics", root)


@FUZZ
@given(contents(json_docs()))
@example(DEEP)
@example(b"\xff")
@example('["000000.mp4"]')
@example('{"000000.mp4": 1, "../../x.mp4": 0, "/etc/passwd": 1, "a\\u0000": "1"}')
@example(json.dumps({LONG_NAME: 1, "000000.mp4": [0], "x.mp4": True}))
def test_deeperforensics_challenge_groundtruth(doc):
    with tree("test-data/000000.mp4") as root:
        write(root / "test-data" / "test_groundtruth.json", doc)
        check("deeperforensics", root)


# -- adapters without a metadata file: fuzzed names on disk -------------------------------------------------------
names = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1,
                max_size=40).filter(lambda s: s not in (".", "..") and len(s.encode()) < 200)


@FUZZ
@given(st.sampled_from(["df40", "wilddeepfake", "folder"]), st.lists(names, min_size=1, max_size=4))
@example("df40", ["\n", "a b", "é"])
@example("wilddeepfake", ["\udcff", "\udcfe.png"])
def test_name_only_adapters(name, parts):
    layouts = {"df40": "m/ff/{0}/{1}.png", "wilddeepfake": "real train/{0}/{1}/000.png",
               "folder": "real/{0}/{1}.mp4"}
    fmt = layouts[name]
    with tree(fmt.format("v", "0"), "fake train/1/s/000.png" if name == "wilddeepfake" else "fake/x.mp4") as root:
        try:
            p = root / fmt.format(*(parts + parts)[:2])
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\x00")
        except (OSError, UnicodeEncodeError):
            assume(False)  # the file system refuses this name
        check(name, root)
