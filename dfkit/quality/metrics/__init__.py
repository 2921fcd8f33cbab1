"""One module per quality metric, named after it. Every module here is imported by ``dfkit.quality.base``'s
registry (:func:`~dfkit.quality.base.list_metrics`); a new metric is a new file with a ``@register_metric`` class."""
