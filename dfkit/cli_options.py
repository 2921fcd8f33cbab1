"""The command-line options several ``dfkit`` commands share, each spelled once here (issue 11 step 4).

A command takes an option from here, with its own help text where the meaning differs per command (``--workers``
are ingest processes in one command and DataLoader workers in another); the option's name, short name, type of
default and how it is shown are defined only here (``tests/test_cli_thin.py`` checks no other module defines them).
Importing this module is cheap (typer and the base modules only), so the CLI starts fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from dfkit.train.settings import MIN_QUALITY_HELP as _TRAIN_MIN_QUALITY_HELP
from dfkit.train.settings import TrainSettings

def _flags_shown_as_flags() -> None:
    """``--help`` shows an on/off flag (``--quiet``, ``--fullref/--no-fullref``) without a value type: typer 0.29
    prints ``<bool>`` beside every flag, as if it took a value. One patch of typer's option class, here, for every
    command (``tests/test_cli.py`` checks every command's help)."""
    from typer.core import TyperOption

    if getattr(TyperOption.display_type_rich, "_dfkit_flags", False):
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self, ctx):
        return None if self.is_flag and not self.count else shown(self, ctx)

    display_type_rich._dfkit_flags = True
    TyperOption.display_type_rich = display_type_rich


_flags_shown_as_flags()


#: the shared option names: no other dfkit module defines an option with one of these
SHARED = ("--corpus", "--workers", "--quiet", "--out", "--weights", "--datasets", "--methods", "--splits",
          "--min-quality", "--drop-suspect")

CORPUS_HELP = "Corpus directory (default: $DFKIT_CORPUS, the config file's `corpus:`, else ./dfkit-corpus)."

#: what ``--min-quality`` filters, per command (shown in its ``--help``)
MIN_QUALITY_HELP = {
    "train": _TRAIN_MIN_QUALITY_HELP,
    "eval": "Evaluation filter, in [0, 1]: score only the evaluated crops (those of --split) with quality >= this "
            "(needs `dfkit quality`); the run's own training filter is not applied here.",
    "cross-dataset": "Training filter of every run, in [0, 1]: train only on training-split crops with quality >= "
                     "this (needs `dfkit quality`); each run is evaluated on every dataset's unfiltered test split.",
    "browse": "Browse filter, in [0, 1]: only crops (of every split shown) with quality >= Q (needs `dfkit "
              "quality`).",
    "export": "As `dfkit train --min-quality`, in [0, 1]: export only the training-split crops with quality >= this "
              "(needs `dfkit quality`); validation and test are exported unfiltered, as train sees them.",
}


def hidden(default: Any, *names: str, help: str, **kw) -> Any:  # noqa: A002 - typer's name
    """An option whose default is not shown (None: "not given"; its help text names the effective default)."""
    return typer.Option(default, *names, help=help, show_default=False, **kw)


def corpus_opt(help: str = CORPUS_HELP) -> Any:  # noqa: A002
    return hidden(None, "--corpus", help=help)


#: ``--corpus PATH`` of every command that reads or writes a corpus; resolve it with :func:`corpus_path`
CorpusOpt = corpus_opt()


def corpus_path(arg: Optional[Path]) -> Path:
    """``--corpus``'s value, else $DFKIT_CORPUS, the config file's ``corpus:``, else ./dfkit-corpus."""
    from dfkit.config import resolve_corpus

    return resolve_corpus(arg)


def workers_opt(help: str, all_cores: bool = False) -> Any:  # noqa: A002
    """``--workers N``: default every core (shown) with ``all_cores``, else None ("the command decides")."""
    if all_cores:
        return typer.Option(os.cpu_count() or 1, "--workers", help=help)
    return hidden(None, "--workers", help=help)


def quiet_opt(help: str = "No progress bar.") -> Any:  # noqa: A002
    return typer.Option(False, "--quiet", "-q", help=help)


def out_opt(default: Optional[Path], help: str) -> Any:  # noqa: A002
    """``--out PATH``: a fixed folder (shown as the default), or None (the help says what is used then)."""
    return typer.Option(default, "--out", help=help) if default is not None else hidden(None, "--out", help=help)


def weights_opt(help: str) -> Any:  # noqa: A002
    return hidden(None, "--weights", help=help)


def datasets_opt(help: str) -> Any:  # noqa: A002
    return hidden(None, "--datasets", help=help)


def methods_opt(help: str) -> Any:  # noqa: A002
    return hidden(None, "--methods", help=help)


def splits_opt(help: str) -> Any:  # noqa: A002
    return hidden(None, "--splits", help=help)


def min_quality_opt(command: str) -> Any:
    """``--min-quality Q`` with what it filters in ``command`` (a key of :data:`MIN_QUALITY_HELP`)."""
    return hidden(None, "--min-quality", help=MIN_QUALITY_HELP[command])


#: what ``--drop-suspect`` leaves out, per command (shown in its ``--help``)
DROP_SUSPECT_HELP = {
    "train": "Leave the suspect crops (fakes on which `dfkit quality` found (almost) no change against the paired "
             "original: probably not manipulated) out of training and validation; the test split is not filtered. "
             "data.json says how many were dropped per split and class (needs `dfkit quality`)",
    "eval": "Leave the suspect crops (fakes on which `dfkit quality` found (almost) no change against the paired "
            "original) out of the evaluated crops; eval.json says how many per class (needs `dfkit quality`).",
    "export": "As `dfkit train --drop-suspect`: leave the suspect crops (fakes on which `dfkit quality` found "
              "(almost) no change against the paired original) out of the training and validation splits; the test "
              "split is exported unfiltered (needs `dfkit quality`).",
}


def drop_suspect_opt(command: str) -> Any:
    """``--drop-suspect``: in ``train`` a setting (``--drop-suspect/--keep-suspect``, None = not given, so a
    ``--config`` file or the resumed run decides), in ``eval`` a flag (off by default)."""
    if command == "train":
        return hidden(None, "--drop-suspect/--keep-suspect",
                      help=DROP_SUSPECT_HELP["train"] + f" (default: {train_on('drop_suspect', 'drop', 'keep')}).")
    return typer.Option(False, "--drop-suspect", help=DROP_SUSPECT_HELP[command])


def train_default(name: str) -> str:
    """``TrainSettings``'s default of ``name`` as the help texts show it: the training options themselves default
    to None ("not given": the --config file or the saved run may set it), so the default is spelled once, in the
    dataclass."""
    from dfkit.config import default_of

    v = default_of(TrainSettings, name)
    return f"{v:g}" if isinstance(v, float) else str(v)


def train_on(name: str, on: str = "on", off: str = "off") -> str:
    from dfkit.config import default_of

    return on if default_of(TrainSettings, name) else off


def default_text(v: Any) -> Any:
    """A default as an option shows it: a sequence as comma-separated values (``(0.0, 0.5)`` -> ``"0,0.5"``)."""
    if isinstance(v, (tuple, list)):
        return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return v
