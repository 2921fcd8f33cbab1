"""Training-data loading: crops/s from the corpus vs the same crops as a PNG folder.

    python bench/loader.py [--workers 2] [--batch-size 64] [--crop-size 256] [--img-size 224] [--epochs 3]

Builds the synthetic demo dataset (``dfkit.demo.synth``) in a temporary folder, ingests it into a corpus
(``run_ingest`` with the ``demo`` adapter), and exports the very same crops as PNG files (the stored PNG bytes
written out unchanged, so both sides decode identical files). Then, with the same worker count, batch size and
sample order (one class-balanced sampler, same seed) and without augmentation on either side:

* **corpus**: dfkit's training path (:func:`dfkit.train.data.make_loaders`): Parquet row groups read in the workers,
  a whole batch decoded per worker call (``__getitems__``, OpenCV), resized, handed over as ``uint8`` and
  normalised on the batch in the main process (:class:`~dfkit.train.data.BatchLoader`);
* **PNG folder**: a plain ``torch.utils.data.Dataset``: per item ``PIL.Image.open(path).convert("RGB")``, resized
  (only when ``--img-size`` differs from the crop size), torchvision ``to_tensor`` + ``normalize``; the default
  collate stacks float tensors.

Each side runs one warm-up epoch (worker start-up, page cache) and then ``--epochs`` timed epochs; the figure is
crops per second over the timed epochs, end to end (batches in the training process, normalised, on the CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class PngFolder:
    """The baseline: one PNG file per crop, read with PIL, converted per item."""

    def __init__(self, paths: list[str], labels: list[int], img_size: int, crop_size: int):
        self.paths, self.labels, self.img_size, self.crop_size = paths, labels, img_size, crop_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image
        import torchvision.transforms.functional as TF

        img = Image.open(self.paths[i]).convert("RGB")
        if self.img_size != self.crop_size:
            img = img.resize((self.img_size, self.img_size), Image.BILINEAR)
        x = TF.normalize(TF.to_tensor(img), MEAN, STD)
        return {"image": x, "label": self.labels[i]}


def build(tmp: Path, crop_size: int, frames: int, workers: int) -> Path:
    from dfkit.demo.synth import make_demo_dataset
    from dfkit.ingest.base import create_adapter
    from dfkit.ingest.engine import IngestParams, run_ingest

    data, corpus = tmp / "data", tmp / "corpus"
    print(f"building the demo dataset and corpus in {tmp} ...", flush=True)
    make_demo_dataset(data, n_identities=6, n_frames=max(frames, 8) + 8, compressions=("c23", "c40"),
                      progress=False)
    for c in ("c23", "c40"):
        run_ingest(create_adapter("demo", data, compression=c), corpus, IngestParams(frames=frames, size=crop_size),
                   workers=workers, progress=False, log=lambda m: None)
    return corpus


def export_png(sel, folder: Path) -> list[str]:
    """Write every training crop's stored PNG bytes to ``folder`` (unchanged); returns the paths in row order."""
    from dfkit.corpus.reader import CropReader

    folder.mkdir(parents=True, exist_ok=True)
    reader = CropReader(sel.files)
    paths = []
    for k, (f, r) in enumerate(zip(sel.train["_file"], sel.train["_row"])):
        p = folder / f"{k:06d}.png"
        p.write_bytes(reader.raw(int(f), int(r)))
        paths.append(str(p))
    return paths


def timed(loader, epochs: int, set_epoch) -> tuple[float, int]:
    n = 0
    t0 = 0.0
    for ep in range(epochs + 1):  # epoch 0: warm-up, not timed
        if ep == 1:
            t0 = time.perf_counter()
            n = 0
        set_epoch(ep)
        for b in loader:
            x = b["image"]
            assert x.dtype.is_floating_point
            n += x.shape[0]
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--crop-size", type=int, default=256, help="crop side stored in the corpus")
    ap.add_argument("--img-size", type=int, default=None, help="model input side (default: the crop size)")
    ap.add_argument("--frames", type=int, default=32, help="frames per video (60 videos)")
    ap.add_argument("--epochs", type=int, default=3, help="timed passes over the training crops")
    ap.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it")
    args = ap.parse_args()
    img = args.img_size or args.crop_size

    import torch
    from torch.utils.data import DataLoader

    from dfkit.train.data import make_loaders, select_data, worker_context
    from dfkit.train.sampler import ClassBalancedSampler

    torch.set_num_threads(1)
    tmpobj = None
    if args.keep:
        tmp = args.keep
        tmp.mkdir(parents=True, exist_ok=True)
    else:
        tmpobj = tempfile.TemporaryDirectory(prefix="dfkit-bench-loader-")
        tmp = Path(tmpobj.name)
    corpus = tmp / "corpus"
    if not (corpus / "manifest.json").exists():
        corpus = build(tmp, args.crop_size, args.frames, max(1, os.cpu_count() or 1))
    sel = select_data(corpus, task="attribution", split="official")
    paths = export_png(sel, tmp / "png")
    labels = sel.train["target"].tolist()
    n = len(labels)
    size_mb = sum(os.path.getsize(p) for p in paths) / 1e6
    print(f"{n} training crops of {args.crop_size} px ({size_mb:.1f} MB of PNG) -> {img} px batches of "
          f"{args.batch_size}, {args.workers} workers, {args.epochs} timed epochs (+1 warm-up), "
          f"{os.cpu_count()} cores")

    # corpus: the training path itself
    train_loader, _ = make_loaders(sel, img_size=img, batch_size=args.batch_size, workers=args.workers, mean=MEAN,
                                   std=STD, augment=False, balanced=True, seed=0)
    t_c, n_c = timed(train_loader, args.epochs, train_loader.sampler.set_epoch)

    # PNG folder: same sampler (same indices), same workers, same batch size
    sampler = ClassBalancedSampler(labels, seed=0)
    ds = PngFolder(paths, labels, img, args.crop_size)
    kw = {"multiprocessing_context": worker_context(), "prefetch_factor": 4} if args.workers else {}
    png_loader = DataLoader(ds, batch_size=args.batch_size, sampler=sampler, drop_last=True,
                            num_workers=args.workers, **kw)
    t_p, n_p = timed(png_loader, args.epochs, sampler.set_epoch)

    r_c, r_p = n_c / t_c, n_p / t_p
    print(f"corpus (Parquet, batched decode, uint8 -> normalised on the batch): {r_c:8.0f} crops/s "
          f"({n_c} crops in {t_c:.2f} s)")
    print(f"PNG folder (PIL + to_tensor/normalize per item):                   {r_p:8.0f} crops/s "
          f"({n_p} crops in {t_p:.2f} s)")
    print(f"ratio corpus / PNG folder: {r_c / r_p:.2f}x (target >= 1.5x)")
    if tmpobj is not None:
        tmpobj.cleanup()


if __name__ == "__main__":
    sys.exit(main())
