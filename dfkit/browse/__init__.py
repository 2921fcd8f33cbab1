"""``dfkit browse``: the corpus in the FiftyOne app. The work is in :mod:`dfkit.browse.core` (imported on first
use, so that the CLI starts fast); this module only registers the command."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

_CORE = ("browse", "build_dataset", "add_predictions", "mark_near_duplicates", "save_views", "serve", "default_name",
         "cache_root", "materialise", "hardness_mistakenness", "BuildStats", "import_fiftyone", "app_url")


def __getattr__(name: str) -> Any:
    if name in _CORE:
        from dfkit.browse import core

        return getattr(core, name)
    raise AttributeError(name)


def register(app) -> None:
    """Add the ``browse`` command to the dfkit Typer app."""
    import typer

    from dfkit.cli import CorpusOpt, _corpus_path

    @app.command("browse")
    def browse_cmd(
        corpus: Optional[Path] = CorpusOpt,
        name: Optional[str] = typer.Option(None, help="FiftyOne dataset name (default: dfkit-<corpus dir>-<hash "
                                           "of its path>)."),
        port: int = typer.Option(5151, help="Port of the app (served on 127.0.0.1 only)."),
        no_launch: bool = typer.Option(False, "--no-launch", help="Only build/update the dataset."),
        run: Optional[Path] = typer.Option(None, help="A training run: add its predictions, hardness and "
                                           "mistakenness."),
        datasets: Optional[list[str]] = typer.Option(None, "--datasets", help="Only these datasets "
                                                     "(comma-separated or repeated)."),
        methods: Optional[list[str]] = typer.Option(None, "--methods", help="Only these methods (dataset's own "
                                                    "or canonical names)."),
        splits: Optional[list[str]] = typer.Option(None, "--splits", help="Only these splits (train, val, "
                                                   "test)."),
        min_quality: Optional[float] = typer.Option(None, "--min-quality", help="Browse filter, in [0, 1]: only "
                                                    "crops (of every split shown) with quality >= Q (needs "
                                                    "`dfkit quality`)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Browse the corpus in the FiftyOne app: one sample per crop with labels, quality, predictions (--run)
        and saved views (per method, per split, low quality, mistakes, near-duplicates, grouped by video).

        The dataset persists and is updated incrementally (only new or changed crops); crops are written once
        into <corpus>/.fiftyone-cache. The app listens on 127.0.0.1 only; Ctrl-C stops it."""
        from dfkit.browse.core import browse
        from dfkit.corpus.schema import check_quality

        min_quality = check_quality(min_quality, "--min-quality")  # refused before anything is built
        browse(_corpus_path(corpus), name=name, port=port, launch=not no_launch, run=run, datasets=datasets,
               methods=methods, splits=splits, min_quality=min_quality, progress=not quiet, echo=typer.echo)
