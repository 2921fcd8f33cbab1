"""The one training-settings type: :class:`TrainSettings`.

Every field of ``dfkit train`` (its command-line options, the keys of a ``--config`` YAML file, ``config.json`` of a
run folder) and of the training loop (:func:`dfkit.train.loop.train`) is declared here once, with its default, and
checked once: at construction (``__post_init__``), raising :class:`~dfkit.errors.SettingsError` (a
:class:`~dfkit.errors.DfkitError`: the CLI prints one line naming the option and exits with code 2). The loop takes
the same object (the runner hands it a copy with the resolved device), so nothing is copied field by field.

Old run folders still load: ``config.json`` holds these keys (plus what the runner adds: classes, counts, ...), and
the ``config`` of a checkpoint's metadata, written by the former ``TrainConfig`` of the loop, holds a subset of them;
:meth:`TrainSettings.from_saved` reads either.

``min_quality`` here is the training filter: ``dfkit train`` (and each run of ``dfkit experiment``) trains on the
**training split's** crops with ``quality >= min_quality`` only; the validation and test crops are never filtered
(:func:`dfkit.train.data.select_data`). ``dfkit eval --min-quality`` is a different filter, on the evaluated crops
(:func:`dfkit.train.evaluation.eval_run`); both are range-checked by :func:`check_quality`. Underneath both,
``Corpus.select(min_quality=)`` / ``Filter(min_quality=)`` is the low-level filter: it keeps whatever rows it is
given (every split, unless ``splits=`` narrows them) with ``quality >= min_quality``; the commands decide which rows
to hand it.

``drop_suspect`` (``dfkit train --drop-suspect``, off by default) leaves the **suspect** crops
(:func:`dfkit.corpus.schema.suspect_mask`: fakes on which ``dfkit quality`` found that (almost) nothing changed) out
of the training and validation splits; the test split is never filtered (``dfkit eval --drop-suspect`` is the
evaluation's own choice). A corpus without the suspect column is refused in one line (run ``dfkit quality`` first).

``holdout_methods`` (``dfkit train --holdout-methods M1,M2``; names as ``--methods``: the dataset's own or canonical)
is the leave-methods-out protocol: those methods' fakes are removed from the training and validation splits and stay
in the test split, where ``dfkit eval`` scores them as unseen (:mod:`dfkit.train.openset`). A name the corpus does
not have, or one that would leave fewer than two classes, is refused by :func:`dfkit.train.data.select_data` before
the run folder is written.

``amp`` (``dfkit train --amp``, :data:`AMP_MODES`, default ``off``) and ``channels_last`` (``--channels-last/
--no-channels-last``, default on) change speed, not what is trained; ``fp16`` on the CPU is refused here, before the
run folder is written. ``config.json`` records what a run used (``amp_used``: ``auto`` resolved; ``channels_last_used``).

This module imports nothing heavy at import time (the CLI reads the defaults from it when it starts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from dfkit.config import default_of, read_yaml_mapping
from dfkit.corpus.schema import check_quality
from dfkit.errors import SettingsError

__all__ = ["TrainSettings", "check_quality", "default_of", "load_settings_file", "MIN_QUALITY_HELP", "AMP_MODES"]

#: what ``dfkit train --min-quality`` means (shown in ``--help``; the experiment commands say the same per run)
MIN_QUALITY_HELP = ("Training filter, in [0, 1]: train only on training-split crops with quality >= this (needs "
                    "`dfkit quality`); the validation and test crops are never filtered.")

# fields of the training loop that have no command-line option (a --config file may still set them)
_LOOP_ONLY = ("min_lr_ratio", "grad_clip", "projection_dim", "probe_lr", "select_metric", "select_level",
              "steps_per_epoch")
_INTS = ("split_seed", "epochs", "img_size", "batch_size", "seed", "probe_epochs", "samples_per_epoch", "workers",
         "threads", "projection_dim", "steps_per_epoch")
_FLOATS = ("min_quality", "max_quality", "lr", "weight_decay", "warmup_epochs", "label_smoothing",
           "contrastive_weight", "temperature", "min_lr_ratio", "grad_clip", "probe_lr")
SELECT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")
#: ``--amp``: ``off`` (float32), ``bf16`` (bfloat16 autocast, CUDA or CPU), ``fp16`` (float16 autocast with gradient
#: scaling, CUDA only), ``auto`` (on CUDA bf16 where the GPU has it, else fp16; on the CPU bf16 only if a short
#: measurement at the start of the run finds it faster than float32, else off: :func:`dfkit.train.loop.resolve_amp`)
AMP_MODES = ("off", "bf16", "fp16", "auto")


def _option(name: str) -> str:
    """How a setting is named in a message: its command-line option, or its ``--config`` key."""
    return f"{name} (a --config setting)" if name in _LOOP_ONLY or name == "max_quality" else \
        "--" + name.replace("_", "-")


@dataclass
class TrainSettings:
    """Everything ``dfkit train`` and the training loop take (one field per option; a YAML ``--config`` file holds
    the same keys). Checked at construction; :meth:`validate` checks again after attributes were changed."""

    corpus: str | None = None
    task: str = "attribution"
    backbone: str = "efficientnet_b0"
    datasets: list[str] | None = None
    methods: list[str] | None = None
    holdout_methods: list[str] | None = None  # leave-methods-out: not in train or val, unseen in test
    compression: list[str] | None = None
    min_quality: float | None = None  # the training split only (see the module docstring)
    max_quality: float | None = None  # the training split only: crops with quality < this (the sweep's low arm)
    split: str = "official"
    split_seed: int = 0  # seed of a computed identity re-split (kept apart from --seed: same split for every seed)
    epochs: int = 10
    img_size: int | None = None  # default: the backbone's
    crop: str = "resize"  # resize (the whole crop to img_size) | center (central img_size px at stored resolution)
    batch_size: int = 32  # per process
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    out: str | None = None
    contrastive: str | None = None  # None or "supcon"
    contrastive_mode: str = "joint"  # "joint" (CE + w * SupCon) or "probe" (SupCon, then a linear probe)
    contrastive_weight: float = 0.5
    temperature: float = 0.1
    probe_epochs: int = 5
    pretrained: bool = False
    weights: str | None = None
    augment: bool | dict = True  # or a mapping of AugmentConfig fields (e.g. {blur: false, channel_gain: true})
    drop_real: bool = False
    drop_suspect: bool = False  # leave suspect crops (suspect_mask) out of training and validation
    balanced: bool = True
    samples_per_epoch: int | None = None  # crops drawn per epoch (default: the training set's size)
    device: str = "auto"  # cpu, cuda, cuda:N or auto
    amp: str = "off"  # off | bf16 | fp16 | auto (see AMP_MODES); true/false of old records: auto/off
    channels_last: bool = True  # channels-last memory format (faster or equal on CPU and GPU: bench/train.py)
    workers: int | None = None
    threads: int | None = None
    progress: bool = True
    # the loop's own details (no command-line option)
    min_lr_ratio: float = 0.01  # the cosine ends at lr * min_lr_ratio
    grad_clip: float | None = None
    projection_dim: int = 128  # SupCon's projection head; 0: SupCon on the embedding itself
    probe_lr: float | None = None  # default: lr
    select_metric: str = "balanced_accuracy"  # the validation metric that picks the best epoch
    select_level: str = "video"  # "video" or "frame"
    steps_per_epoch: int | None = None  # only for loaders without len()

    def __post_init__(self) -> None:
        self.validate()

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str = "settings") -> "TrainSettings":
        """From a mapping with these keys (``-`` or ``_``); an unknown key is refused."""
        d = {str(k).replace("-", "_"): v for k, v in (d or {}).items()}
        unknown = sorted(set(d) - set(cls.keys()))
        if unknown:
            raise SettingsError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(cls.keys())}")
        return cls(**d)

    @classmethod
    def from_saved(cls, d: dict[str, Any] | None) -> "TrainSettings":
        """From a saved record: a run's ``config.json`` (which adds classes, counts, ... : ignored) or the ``config``
        of a checkpoint's metadata, in today's format or the former loop's ``TrainConfig`` one (a subset of the
        keys: the others take their defaults)."""
        known = set(cls.keys())
        return cls(**{k: v for k, v in (d or {}).items() if k in known})

    def merged(self, overrides: dict[str, Any]) -> "TrainSettings":
        """A copy with ``overrides`` (``None`` values are ignored: "not given")."""
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return TrainSettings.from_dict(d)

    def copy(self, **changes: Any) -> "TrainSettings":
        """A checked copy with ``changes`` (``None`` counts: it sets the field to ``None``)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # -- checks -------------------------------------------------------------------------------------------------

    def normalise(self) -> None:
        """Lists from ``"a,b"`` strings, ``"none"``/``"off"`` as no contrastive loss, numbers from strings."""
        from dfkit.train.data import parse_list

        for name in ("datasets", "methods", "holdout_methods", "compression"):
            setattr(self, name, parse_list(getattr(self, name)))
        if isinstance(self.contrastive, str) and self.contrastive.lower() in ("", "none", "off"):
            self.contrastive = None
        for name in _INTS + _FLOATS:
            v = getattr(self, name)
            if v is None:
                continue
            try:
                if isinstance(v, bool):
                    raise ValueError(v)
                if name in _FLOATS:
                    v = float(v)
                elif not isinstance(v, int):
                    f = float(v)
                    if not f.is_integer():
                        raise ValueError(v)
                    v = int(f)
            except (TypeError, ValueError):
                kind = "a whole number" if name in _INTS else "a number"
                raise SettingsError(f"{_option(name)} must be {kind}, not {getattr(self, name)!r}") from None
            setattr(self, name, v)
        self.device = str(self.device)
        if isinstance(self.amp, bool):  # records of older runs: amp true = bfloat16 on CUDA
            self.amp = "auto" if self.amp else "off"
        self.amp = str(self.amp).lower()

    def validate(self) -> None:
        """Normalise, then check every field (a :class:`~dfkit.errors.SettingsError` naming the option)."""
        self.normalise()
        from dfkit.train.backbones import list_backbones
        from dfkit.train.data import CROP_MODES, TASKS, augment_config

        if self.task not in TASKS:
            raise SettingsError(f"unknown task {self.task!r}: use binary or attribution")
        if self.backbone not in list_backbones():
            raise SettingsError(f"unknown backbone {self.backbone!r}; known: {', '.join(list_backbones())}")
        self.min_quality = check_quality(self.min_quality, "--min-quality")
        self.max_quality = check_quality(self.max_quality, _option("max_quality"))
        if self.holdout_methods and self.methods:
            both = [m for m in self.holdout_methods if m in self.methods]
            if both:
                raise SettingsError(f"--holdout-methods {', '.join(both)}: also in --methods (a method is trained on "
                                    "or held out, not both)")
        if self.holdout_methods and "real" in self.holdout_methods:
            raise SettingsError("--holdout-methods: real is not a fake method (hold out fake methods only)")
        if self.contrastive not in (None, "supcon"):
            raise SettingsError(f"unknown --contrastive {self.contrastive!r}: the only one is supcon")
        if self.contrastive_mode not in ("joint", "probe"):
            raise SettingsError(f"--contrastive-mode must be joint or probe, not {self.contrastive_mode!r}")
        at_least = {"epochs": 1, "batch_size": 1, "probe_epochs": 0, "projection_dim": 0, "split_seed": 0,
                    "samples_per_epoch": 1, "steps_per_epoch": 1, "workers": 0, "threads": 1, "img_size": 8}
        for name, low in at_least.items():
            v = getattr(self, name)
            if v is not None and v < low:
                raise SettingsError(f"{_option(name)} must be >= {low}, not {v}")
        for name in ("lr", "temperature", "grad_clip", "probe_lr"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise SettingsError(f"{_option(name)} must be > 0, not {v}")
        for name in ("weight_decay", "warmup_epochs", "contrastive_weight"):
            if not getattr(self, name) >= 0:
                raise SettingsError(f"{_option(name)} must be >= 0, not {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise SettingsError(f"--label-smoothing must lie in [0, 1), not {self.label_smoothing}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise SettingsError(f"{_option('min_lr_ratio')} must lie in [0, 1], not {self.min_lr_ratio}")
        if self.select_metric not in SELECT_METRICS:
            raise SettingsError(f"{_option('select_metric')} must be one of {', '.join(SELECT_METRICS)}, "
                                f"not {self.select_metric!r}")
        if self.select_level not in ("video", "frame"):
            raise SettingsError(f"{_option('select_level')} must be video or frame, not {self.select_level!r}")
        if not isinstance(self.drop_suspect, bool):
            raise SettingsError(f"--drop-suspect must be true or false, not {self.drop_suspect!r}")
        if self.crop not in CROP_MODES:
            raise SettingsError(f"--crop must be one of {', '.join(CROP_MODES)}, not {self.crop!r}")
        try:
            augment_config(self.augment)
        except SettingsError:
            raise
        except Exception as e:  # DfkitError (unknown augmentation settings) and friends: one line, exit 2
            raise SettingsError(str(e).splitlines()[0] if str(e) else f"--augment: {e!r}") from None
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise SettingsError(f"--device must be cpu, cuda, cuda:N or auto, not {self.device!r}")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise SettingsError(f"--device {self.device}: CUDA is not available on this machine")
        if self.amp not in AMP_MODES:
            raise SettingsError(f"--amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        if not isinstance(self.channels_last, bool):
            raise SettingsError(f"--channels-last must be true or false, not {self.channels_last!r}")
        if self.amp == "fp16" and not self.device.startswith("cuda"):
            import torch

            if self.device == "cpu" or not torch.cuda.is_available():
                raise SettingsError("--amp fp16 needs a CUDA device (--device cuda); on the CPU use --amp bf16 or "
                                    "auto")
        if self.weights is not None and not Path(self.weights).expanduser().exists():
            raise SettingsError(f"--weights: no such file {self.weights}")


def load_settings_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) settings file -> dict (keys as the command-line options, ``-`` or ``_``)."""
    from dfkit.errors import DfkitError

    p = Path(path).expanduser()
    if not p.exists():
        raise DfkitError(f"--config: no such file {p}")
    data = read_yaml_mapping(p, "of settings (task: attribution, backbone: ...)")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(TrainSettings.keys()))
    if unknown:
        raise DfkitError(f"{p}: unknown setting(s) {', '.join(unknown)}")
    return data
