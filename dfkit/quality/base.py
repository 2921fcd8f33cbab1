"""The metric unit, the score maps and the registry.

Model: CleanVision's ``issue_managers/image_property.py``: every property is one small unit that computes a *raw*
value (in physical units: grey levels, source pixels, degrees, bits per pixel, ...) and maps it with a documented
**monotone** function to a *score* in [0, 1], where higher always means better quality. The maps are fixed
functions with absolute anchors (never per-corpus percentiles), so a score means the same on every corpus and
machine.

A metric lives in its own module in ``dfkit/quality/metrics/`` named after it, decorated with
:func:`register_metric`; :func:`list_metrics` imports every module there.

Two levels:

* ``level = "crop"``: :meth:`Metric.measure` sees one crop (a :class:`~dfkit.quality.view.CropView`: the decoded
  pixels plus the row's geometry) and returns its raw value.
Each unit also carries its default composite ``weight`` and its listing ``order`` (CleanVision keeps a property's
defaults beside it).

* ``level = "video"``: :meth:`Metric.measure_video` sees all crop rows of one video, ordered by ``frame_index``
  (e.g. temporal box jitter), or just the video facts every row of the video shares (bitrate, resolution, ...).
  The value is broadcast to every crop row of the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from dfkit.registry import Registry

NAN = float("nan")


# ----------------------------------------------------------------------------------------------------------------------
# score maps: raw -> [0, 1], monotone, with anchors that say what a score means
# ----------------------------------------------------------------------------------------------------------------------


class ScoreMap:
    """A monotone map from a raw value to a score in [0, 1]. NaN (unknown raw) maps to NaN."""

    increasing: bool = True

    def __call__(self, x):
        raise NotImplementedError

    def inverse(self, s: float) -> float:
        """The raw value whose score is ``s`` (for explanations: what does a score of 0.7 mean?)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _out(x_in, y: np.ndarray):
    return float(y) if np.ndim(x_in) == 0 else y


@dataclass(frozen=True)
class Logistic(ScoreMap):
    """``s = 1 / (1 + exp(-k (x - x50)))`` with ``k = ln 9 / (x90 - x50)``: score 0.5 at ``x50``, 0.9 at ``x90``.

    Increasing when ``x90 > x50``, decreasing when ``x90 < x50``. Strictly monotone, never saturates."""

    x50: float
    x90: float

    @property
    def increasing(self) -> bool:  # type: ignore[override]
        return self.x90 > self.x50

    @property
    def k(self) -> float:
        return math.log(9.0) / (self.x90 - self.x50)

    def __call__(self, x):
        a = _arr(x)
        with np.errstate(over="ignore", invalid="ignore"):
            y = 1.0 / (1.0 + np.exp(-self.k * (a - self.x50)))
        return _out(x, y)

    def inverse(self, s: float) -> float:
        return self.x50 + math.log(s / (1 - s)) / self.k

    def describe(self) -> str:
        return f"logistic: score 0.5 at {self.x50:g}, 0.9 at {self.x90:g}"


@dataclass(frozen=True)
class LogLogistic(ScoreMap):
    """Logistic in ``log(x)``: ``s = 1 / (1 + (x50 / x) ** k)``, ``k = ln 9 / ln(x90 / x50)``: score 0.5 at
    ``x50``, 0.9 at ``x90``, for positive ratio-scale quantities (pixels, variances, bits). ``x <= 0`` maps to the
    limit (0 when increasing, 1 when decreasing)."""

    x50: float
    x90: float

    @property
    def increasing(self) -> bool:  # type: ignore[override]
        return self.x90 > self.x50

    @property
    def k(self) -> float:
        return math.log(9.0) / math.log(self.x90 / self.x50)

    def __call__(self, x):
        a = _arr(x)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            t = np.log(np.maximum(a, 1e-300) / self.x50) * self.k
            y = 1.0 / (1.0 + np.exp(-t))
        return _out(x, y)

    def inverse(self, s: float) -> float:
        return self.x50 * (s / (1 - s)) ** (1 / self.k)

    def describe(self) -> str:
        return f"log-logistic: score 0.5 at {self.x50:g}, 0.9 at {self.x90:g}"


@dataclass(frozen=True)
class PowerDecay(ScoreMap):
    """For fractions in [0, 1] where 0 is ideal: ``s = (1 - clip(x, 0, 1)) ** gamma``, ``gamma`` chosen so that the
    score is ``s_at`` at ``x_at``. Score 1 at 0, 0 at 1, strictly decreasing in between."""

    x_at: float
    s_at: float
    increasing: ClassVar[bool] = False  # type: ignore[misc]

    @property
    def gamma(self) -> float:
        return math.log(self.s_at) / math.log(1 - self.x_at)

    def __call__(self, x):
        a = _arr(x)
        with np.errstate(invalid="ignore"):
            y = (1.0 - np.clip(a, 0.0, 1.0)) ** self.gamma
        return _out(x, y)

    def inverse(self, s: float) -> float:
        return 1 - s ** (1 / self.gamma)

    def describe(self) -> str:
        return f"(1 - x)^{self.gamma:.2f}: score 1 at 0, {self.s_at:g} at {self.x_at:g}, 0 at 1"


@dataclass(frozen=True)
class Clip01(ScoreMap):
    """Identity clipped to [0, 1] (the raw value already is a [0, 1] quality, e.g. a detector confidence)."""

    increasing: ClassVar[bool] = True  # type: ignore[misc]

    def __call__(self, x):
        a = _arr(x)
        return _out(x, np.clip(a, 0.0, 1.0))

    def inverse(self, s: float) -> float:
        return s

    def describe(self) -> str:
        return "identity, clipped to [0, 1]"


@dataclass(frozen=True)
class Lookup(ScoreMap):
    """For a categorical raw value (a string): a fixed table; values not in it score ``default``."""

    table: dict = field(default_factory=dict)
    default: float = NAN
    increasing: ClassVar[bool] = True  # type: ignore[misc]

    def __call__(self, x):
        if isinstance(x, (str, type(None))):
            return float(self._one(x))
        return np.array([self._one(v) for v in x], dtype=np.float64)

    def _one(self, v) -> float:
        if v is None:
            return NAN
        return self.table.get(str(v).lower(), self.default)

    def inverse(self, s: float) -> float:
        return NAN

    def describe(self) -> str:
        items = ", ".join(f"{k}={v:g}" for k, v in self.table.items())
        return f"table: {items}; other: {self.default:g}"


# ----------------------------------------------------------------------------------------------------------------------
# the metric unit
# ----------------------------------------------------------------------------------------------------------------------


class Metric:
    """One quality property.

    Subclasses set the class attributes and implement :meth:`measure` (crop level) or :meth:`measure_video`
    (video level). ``score_map`` maps the raw value to [0, 1] (higher = better); ``direction`` says which raw
    direction is better: ``"higher"`` (e.g. sharpness), ``"lower"`` (e.g. noise) or ``"categorical"``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    direction: ClassVar[str] = "higher"  # higher | lower | categorical
    level: ClassVar[str] = "crop"  # crop | video
    needs_pixels: ClassVar[bool] = True
    raw_type: ClassVar[str] = "float"  # float | string
    score_map: ClassVar[ScoreMap] = Clip01()
    # extra raw columns this metric reports besides its raw value (column q_<name>_<extra>)
    extras: ClassVar[tuple[str, ...]] = ()
    #: default composite weight (the exponent of this score in the weighted minimum, see composite.py; 0 = reported,
    #: not part of ``quality``), and the position in listings and tables (ascending)
    weight: ClassVar[float] = 0.0
    order: ClassVar[int] = 1000

    # -- crop level ----------------------------------------------------------------------------------------------
    def measure(self, view) -> float:
        """Raw value of one crop from its :class:`~dfkit.quality.view.CropView`. NaN when not measurable."""
        raise NotImplementedError(f"{self.name} is a video-level metric: use measure_video")

    def measure_extras(self, view) -> dict[str, Any]:
        """Values of the extra columns, keyed by the names in ``extras`` (default: none)."""
        return {}

    def raw(self, crop_rgb_uint8: np.ndarray | None, row: dict) -> float:
        """Raw value of one crop: ``crop_rgb_uint8`` is the decoded crop (H, W, 3) uint8 RGB, ``row`` the corpus
        row (``bbox``, ``crop_box``, ``width``, ...). Video-level metrics use ``[row]`` as the video."""
        if self.level == "video":
            return self.measure_video([row])
        from dfkit.quality.view import CropView

        return self.measure(CropView(crop_rgb_uint8, row))

    # -- video level ---------------------------------------------------------------------------------------------
    def measure_video(self, rows: Sequence[dict]) -> Any:
        """Raw value of one video from its crop rows ordered by ``frame_index`` (or from a ``videos`` row)."""
        raise NotImplementedError(f"{self.name} is a crop-level metric: use measure")

    # -- score ---------------------------------------------------------------------------------------------------
    def score(self, raw) -> float:
        """The raw value mapped to [0, 1], higher = better (NaN for an unknown raw value)."""
        if raw is None:
            return NAN
        return self.score_map(raw)

    def scores(self, raws) -> np.ndarray:
        """Vectorised :meth:`score`."""
        if self.raw_type == "string":
            return self.score_map(list(raws))
        a = np.array([NAN if v is None else v for v in raws], dtype=np.float64)
        return self.score_map(a)

    def raw_at(self, s: float) -> float:
        """The raw value at which the score equals ``s``."""
        return self.score_map.inverse(s)

    def doc(self) -> str:
        better = "categorical" if self.direction == "categorical" else f"{self.direction} is better"
        return f"{self.name} [{self.unit}, {better}]: {self.description} Map: {self.score_map.describe()}."

    def __repr__(self) -> str:
        return f"<Metric {self.name} ({self.level})>"


# ----------------------------------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------------------------------

#: every metric, by its class's ``name``; the modules of ``dfkit/quality/metrics/`` are imported on first lookup
METRICS: Registry[type[Metric]] = Registry("quality metric", "dfkit.quality.metrics", named_by="attribute")


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: make a metric available under ``cls.name``; a name taken by another metric is refused."""
    return METRICS.register(cls)


def list_metrics(level: str | None = None) -> list[str]:
    """Names of all registered metrics (optionally only ``level="crop"`` or ``"video"``), in a stable order: by
    each class's ``order``, then name."""
    names = METRICS.list(None if level is None else (lambda cls: cls.level == level))
    return sorted(names, key=lambda n: (METRICS.get(n).order, n))


def create_metric(name: str) -> Metric:
    """A metric instance by name; :class:`~dfkit.registry.UnknownNameError` (a DfkitError and a ValueError) naming
    the known metrics otherwise."""
    return METRICS.create(name)


def get_metrics(names: Sequence[str] | None = None) -> list[Metric]:
    return [create_metric(n) for n in (names if names is not None else list_metrics())]



ScoreFn = Callable[[float], float]
