"""dfkit's synthetic demo dataset: FaceForensics++ layout, four synthetic methods (``dfkit/demo/synth.py``).

It is read exactly like FF++ (same folders, names, official split ids) but recorded as dataset ``demo`` so that
synthetic crops never pass for real FF++ ones.
"""

from __future__ import annotations

from dfkit.ingest.adapters.ffpp import FFPPAdapter
from dfkit.ingest.base import register_adapter


@register_adapter
class DemoAdapter(FFPPAdapter):
    name = "demo"
    title = "dfkit synthetic demo (FF++ layout; made by `dfkit demo`)"
    youtube_groups = False
