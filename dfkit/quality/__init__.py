"""Quality metrics for face crops: per-crop no-reference metrics with monotone [0, 1] scores, a composite
``quality``, per-video values, and full-reference metrics against a paired original / less compressed copy.

Public API::

    from dfkit.quality import compute_quality, compute_fullref, recompose, resolve_weights, explain
    from dfkit.quality import create_metric, list_metrics, register_metric, Metric

See ``dfkit/quality/README.md``.
"""

from dfkit.quality.base import Metric, create_metric, get_metrics, list_metrics, register_metric
from dfkit.quality.composite import (DEFAULT_WEIGHTS, WeightsError, composite, explain, load_weights, parse_weights,
                                     recompose, resolve_weights)
from dfkit.quality.compute import QUALITY_VERSION, compute_quality, quality_schema, summarize_videos


def compute_fullref(*args, **kwargs):
    """See :func:`dfkit.quality.fullref.compute_fullref` (imported lazily: it needs torch and piq)."""
    from dfkit.quality.fullref import compute_fullref as f

    return f(*args, **kwargs)


__all__ = [
    "Metric", "create_metric", "get_metrics", "list_metrics", "register_metric",
    "DEFAULT_WEIGHTS", "WeightsError", "composite", "explain", "load_weights", "parse_weights", "recompose",
    "resolve_weights", "QUALITY_VERSION", "compute_quality", "quality_schema", "summarize_videos",
    "compute_fullref",
]
