"""Training throughput: crops/s of the loader alone, of model + optimizer alone and of both together.

    python bench/train.py [--device cpu] [--models tiny,efficientnet_b0,convnext_tiny] [--img-size 128]
                          [--batch-size 16] [--steps 3] [--workers N] [--keep DIR]

Builds the synthetic demo corpus as bench/loader.py does (``dfkit.demo.synth``, ingested with the ``demo`` adapter,
in a temporary folder; small: 6 identities, 8 crops of 128 px a video), then for each backbone (from scratch,
``pretrained=False``):

* **loader** (with each ``augment_on``: every augmentation per item in the worker; blur/JPEG per item and the batch
  ops on the batch in the worker; the batch ops on the device after the move): dfkit's training loader (:func:`dfkit.train.data.make_loaders`, the default augmentations, uint8
  batches moved to the device and normalised there; on a GPU the batch ops (flip, colour jitter) run there too, on
  the CPU every augmentation runs per item in the worker: ``augment_on`` auto) with nothing else running:
  crops/s over ``--loader-batches`` batches after one warm-up batch (once per image size: it does not depend on
  the model);
* **model + optimizer**: one fixed in-memory batch (float, normalised), forward + cross-entropy + backward + AdamW
  step, for every combination of channels-last off/on and mixed precision off/bf16 (and fp16 on CUDA): crops/s from
  the median of ``--steps`` timed steps after one warm-up step;
* **end to end**: the loader feeding model + optimizer, with the fastest of those combinations, ``--steps`` timed
  steps after a warm-up; the line names the slower side (loader or model).

On the CPU the torch threads are the cores the loader workers leave free (as ``dfkit train``); the machine's cores
and torch's version are printed. Keep runs short on shared machines: figures are medians of few steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/loader.py's corpus builder


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def loader_rate(loader, dev, batches: int) -> float:
    """crops/s of ``batches`` batches after a warm-up one (epochs cycled as needed)."""
    n, t0, done, epoch = 0, 0.0, -1, 0
    while done < batches:
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        for b in loader:
            if done < 0:
                _sync(dev)
                t0 = time.perf_counter()
            else:
                n += int(b["image"].shape[0])
            done += 1
            if done >= batches:
                break
        epoch += 1
    _sync(dev)
    return n / (time.perf_counter() - t0)


def make_step(name: str, n_classes: int, img: int, dev, channels_last: bool, amp: str):
    import torch
    import torch.nn.functional as F

    from dfkit.train.backbones import create_backbone
    from dfkit.train.loop import autocast_dtype

    torch.manual_seed(0)
    model = create_backbone(name, num_classes=n_classes, pretrained=False, img_size=img).to(dev).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = autocast_dtype(amp)
    scaler = torch.amp.GradScaler(dev.type) if amp == "fp16" else None

    def step(x, y) -> float:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return float(loss.detach())

    return model, step


def model_rate(step, x, y, dev, steps: int) -> tuple[float, float]:
    """(crops/s from the median step, the last loss)."""
    loss = step(x, y)  # warm-up
    times = []
    for _ in range(steps):
        _sync(dev)
        t0 = time.perf_counter()
        loss = step(x, y)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return x.shape[0] / statistics.median(times), loss


def e2e_rate(step, loader, dev, steps: int) -> float:
    n, t0, done, epoch = 0, 0.0, -1, 0
    while done < steps:
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        for b in loader:
            step(b["image"], b["label"].to(dev))
            if done < 0:
                _sync(dev)
                t0 = time.perf_counter()
            else:
                n += int(b["image"].shape[0])
            done += 1
            if done >= steps:
                break
        epoch += 1
    _sync(dev)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--models", default="tiny,efficientnet_b0,convnext_tiny")
    ap.add_argument("--img-size", type=int, default=128, help="model input side (e.g. 128 or 224)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per measurement (after one warm-up)")
    ap.add_argument("--loader-batches", type=int, default=12, help="timed batches of the loader alone")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: as dfkit train)")
    ap.add_argument("--samples-per-epoch", type=int, default=None, help="crops drawn per loader epoch (default: "
                    "enough for one measurement without a new epoch, at least the training set)")
    ap.add_argument("--amp", default=None, help="comma-separated amp modes to measure (default: off,bf16 "
                    "[,fp16 on CUDA])")
    ap.add_argument("--corpus", type=Path, default=None, help="use this corpus instead of building the demo one")
    ap.add_argument("--keep", type=Path, default=None, help="build the demo corpus in this folder and keep it")
    ap.add_argument("--build-only", action="store_true", help="with --keep: build the demo corpus, measure nothing")
    args = ap.parse_args()

    import torch

    from dfkit.train.backbones import backbone_spec
    from dfkit.train.data import AUGMENT_ON, default_workers, make_loaders, select_data
    from dfkit.train.loop import resolve_device
    from dfkit.train.runner import default_threads

    import logging

    logging.getLogger("dfkit.train").setLevel(logging.ERROR)  # "training from scratch": said once, here
    dev = resolve_device(args.device)
    workers = default_workers() if args.workers is None else args.workers
    threads = default_threads(workers) if dev.type == "cpu" else max(1, (os.cpu_count() or 2) - workers)
    torch.set_num_threads(threads)
    amps = args.amp.split(",") if args.amp else ["off", "bf16"] + (["fp16"] if dev.type == "cuda" else [])
    tmpobj = None
    if args.corpus:
        corpus = args.corpus
    else:
        if args.keep:
            tmp = args.keep
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmpobj = tempfile.TemporaryDirectory(prefix="dfkit-bench-train-")
            tmp = Path(tmpobj.name)
        corpus = tmp / "corpus"
        if not (corpus / "manifest.json").exists():
            from loader import build

            t0 = time.perf_counter()
            corpus = build(tmp, 128, 8, max(1, os.cpu_count() or 1))
            print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.build_only:
        print(f"corpus: {corpus}")
        return
    sel = select_data(corpus, task="attribution", split="official")
    n_cls, bs, img = len(sel.class_names), args.batch_size, args.img_size
    # one epoch covers a whole measurement (a new epoch restarts the loader workers, which is no steady state)
    n_epoch = args.samples_per_epoch or max(len(sel.train), bs * (max(args.loader_batches, args.steps) + 2))
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "-"
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, device {dev} ({gpu}); {threads} torch "
          f"threads, {workers} loader workers; {len(sel.train)} training crops, {n_cls} classes; {img} px, batch "
          f"{bs}, {n_epoch} crops a loader epoch; models from scratch; medians of {args.steps} steps", flush=True)

    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes (as dfkit train on CUDA)
    loaders: dict[bool, object] = {}

    def loader_for(cl: bool, on: str = "auto"):
        if (cl, on) not in loaders:
            spec_mean, spec_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
            loaders[cl, on], _ = make_loaders(sel, img_size=img, batch_size=bs, workers=workers, mean=spec_mean,
                                              std=spec_std, augment=True, seed=0, device=str(dev), channels_last=cl,
                                              samples_per_epoch=n_epoch, augment_on=on)
        return loaders[cl, on]

    auto = "device" if dev.type == "cuda" else "item"
    rates = {}
    for on in AUGMENT_ON:  # where the augmentations run (dfkit picks `auto` for this device)
        rates[on] = loader_rate(loader_for(False, on), dev, args.loader_batches)
        print(f"loader alone, default augmentations {on:6s}: {rates[on]:6.0f} crops/s"
              + ("  <- dfkit's choice here" if on == auto else ""), flush=True)
    t_load = rates[auto]
    rows = []
    for name in args.models.split(","):
        backbone_spec(name)  # an unknown name fails here, before any timing
        g = torch.Generator().manual_seed(0)
        x = torch.randn(bs, 3, img, img, generator=g).to(dev)
        y = torch.randint(0, n_cls, (bs,), generator=g).to(dev)
        best = None
        for cl in (False, True):
            for amp in amps:
                t0 = time.perf_counter()
                _, step = make_step(name, n_cls, img, dev, cl, amp)
                rate, loss = model_rate(step, x, y, dev, args.steps)
                rows.append((name, cl, amp, rate))
                print(f"  {name:16s} channels-last {'on ' if cl else 'off'} amp {amp:4s}: model+optimizer "
                      f"{rate:7.1f} crops/s (loss {loss:.3f}; {time.perf_counter() - t0:.0f} s)", flush=True)
                if best is None or rate > best[2]:
                    best = (cl, amp, rate)
        cl, amp, rate = best
        _, step = make_step(name, n_cls, img, dev, cl, amp)
        e2e = e2e_rate(step, loader_for(cl), dev, args.steps)
        slower = "loader" if t_load < rate else "model"
        print(f"  {name:16s} end to end (channels-last {'on' if cl else 'off'}, amp {amp}): {e2e:7.1f} crops/s; "
              f"loader {t_load:.0f} vs model {rate:.1f} crops/s: the {slower} is the slower side", flush=True)
        rows.append((name, cl, amp, rate, e2e, slower))

    print("\n| model | channels-last | amp | model+optimizer crops/s |")
    print("|---|---|---|---|")
    for r in rows:
        if len(r) == 4:
            print(f"| {r[0]} | {'on' if r[1] else 'off'} | {r[2]} | {r[3]:.1f} |")
    print("\n| model | loader crops/s | model+optimizer (best) | end to end | slower side |")
    print("|---|---|---|---|---|")
    for r in rows:
        if len(r) == 6:
            print(f"| {r[0]} | {t_load:.0f} | {r[3]:.1f} ({'cl' if r[1] else 'nchw'}, {r[2]}) | {r[4]:.1f} | "
                  f"{r[5]} |")
    if tmpobj is not None:
        tmpobj.cleanup()


if __name__ == "__main__":
    sys.exit(main())
