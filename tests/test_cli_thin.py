"""A thin CLI (issue 11 step 4): shared options spelled once in :mod:`dfkit.cli_options`, and every command a short
body that calls its function in :mod:`dfkit.services` -- the functions the demo calls too."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import typer

PKG = Path(__file__).resolve().parents[1] / "dfkit"

#: most statements-lines a command's body may have (after its docstring): parse, call the service, exit code
MAX_BODY_LINES = 12

#: the command -> the service function it calls (``dfkit demo``'s is the demo itself)
SERVICES = {
    "ingest": "ingest", "info": "info", "datasets": "datasets", "demo": "run_demo", "audit": "audit",
    "browse": "browse", "train": "train", "eval": "evaluate", "quality": "quality",
    "quality calibrate": "quality_calibrate", "splits audit": "splits_audit", "splits resplit": "splits_resplit",
    "experiment quality-sweep": "quality_sweep", "experiment cross-dataset": "cross_dataset",
    "predict": "predict", "export": "export", "export-model": "export_model",
    "study run": "study_run", "study report": "study_report",
}

#: the services the demo's steps call (the same functions as the commands)
DEMO_CALLS = {"ingest", "info", "quality", "quality_calibrate", "audit", "train", "evaluate", "quality_sweep"}


def _commands(t: typer.Typer, prefix: str = "") -> dict[str, object]:
    from typer.main import get_command_name

    out = {}
    for c in t.registered_commands:
        out[prefix + (c.name or get_command_name(c.callback.__name__))] = c.callback
    for g in t.registered_groups:
        sub = g.typer_instance
        cb = sub.registered_callback
        if cb is not None and cb.invoke_without_command:
            out[prefix + g.name] = cb.callback  # `dfkit quality` itself does the work
        out.update(_commands(sub, prefix + g.name + " "))
    return out


def _fn_ast(fn) -> ast.FunctionDef:
    return ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]


def _body_lines(node: ast.FunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the docstring
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def _called(node: ast.AST) -> set[str]:
    """Names called as ``services.X(...)`` or ``X(...)`` in ``node``."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "services":
                out.add(f.attr)
            elif isinstance(f, ast.Name):
                out.add(f.id)
    return out


def test_every_command_is_listed():
    from dfkit.cli import app

    assert set(_commands(app)) == set(SERVICES)


def test_every_command_body_is_short_and_calls_its_service():
    from dfkit import services
    from dfkit.cli import app

    for name, fn in _commands(app).items():
        node = _fn_ast(fn)
        n = _body_lines(node)
        assert n <= MAX_BODY_LINES, f"`dfkit {name}`: {n} lines of body; move the work into dfkit.services"
        svc = SERVICES[name]
        assert svc in _called(node), f"`dfkit {name}` does not call its service {svc}"
        if svc != "run_demo":
            assert callable(getattr(services, svc)), svc


def test_the_demo_calls_the_same_services():
    trees = [ast.parse(p.read_text()) for p in (PKG / "demo").glob("*.py")]
    via_services, direct = set(), set()
    for t in trees:
        for n in ast.walk(t):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
                on = getattr(n.func.value, "id", None)
                (via_services if on == "services" else direct).add(n.func.attr)
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
                direct.add(n.func.id)
    assert DEMO_CALLS <= via_services, DEMO_CALLS - via_services
    # ... and not the library functions those services wrap
    wrapped = {"run_ingest", "create_adapter", "run_quality", "calibrate", "build_report", "train_run", "eval_run",
               "quality_sweep", "corpus_info_text"}
    assert not direct & wrapped, f"the demo calls {sorted(direct & wrapped)} directly instead of their services"


def _option_calls(tree: ast.AST):
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("Option", "hidden", "_opt"):
                yield n


def test_shared_options_are_defined_only_in_cli_options():
    from dfkit.cli_options import SHARED

    bad = []
    for p in sorted(PKG.rglob("*.py")):
        if p.name == "cli_options.py" and p.parent == PKG:
            continue
        for call in _option_calls(ast.parse(p.read_text())):
            names = {a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
            if names & set(SHARED):
                bad.append(f"{p.relative_to(PKG.parent)}:{call.lineno}: {sorted(names & set(SHARED))}")
    assert not bad, "define shared options in dfkit/cli_options.py: " + "; ".join(bad)


def test_commands_take_shared_options_from_cli_options():
    # an option named by its parameter (``workers: int = typer.Option(4)`` is --workers) counts too
    from dfkit.cli import app

    shared_params = {"corpus", "workers", "quiet", "out", "weights", "datasets", "methods", "splits", "min_quality"}
    for name, fn in _commands(app).items():
        a = _fn_ast(fn).args
        for arg, default in zip(a.args[len(a.args) - len(a.defaults):], a.defaults):
            if arg.arg in shared_params:
                assert not list(_option_calls(default)), f"`dfkit {name}` --{arg.arg} is not from dfkit.cli_options"


def test_the_corpus_option_is_resolved_in_one_place():
    src = {p: p.read_text() for p in PKG.rglob("*.py")}
    assert not [p for p, s in src.items() if "def _corpus_path" in s]
    assert "from dfkit.cli" not in (PKG / "browse" / "__init__.py").read_text()
