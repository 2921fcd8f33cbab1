"""The package layering (issue 11): ``dfkit.corpus`` alone owns what is on disk, and the stages build on it.

Every import of a ``dfkit`` module by a ``dfkit`` module counts, at module level or inside a function (lazy imports
are dependencies too); ``from dfkit.x import y`` counts as an import of ``dfkit.x``. Units are the top-level
subpackages and modules: ``corpus``, ``ingest``, ``quality``, ``train``, ``browse``, ``demo``, ``splits``, ``report``,
``cli``, ``cli_train``, ``cli_options``, ``services``, and the base modules (``errors``, ``paths``, ``config``, ``taxonomy``, ``registry``, ``procs``, ``media``, the
package root ``dfkit`` itself). The rules asserted:

1. ``dfkit.corpus`` imports only itself and the base modules -- never ingest, quality, train, browse, splits, report,
   demo, cli, cli_train, cli_options or services.
2. The stages (ingest, quality, train, browse) import only base modules, ``dfkit.corpus``, ``dfkit.splits`` (the
   corpus-level split library, itself bound by rule 3) and their own package -- never each other -- except for the
   imports listed in ``KNOWN_STAGE_IMPORTS``, each with its reason. No listed import may be stale (listed while its
   module exists and no longer makes it).
3. ``dfkit.splits`` imports only base modules and ``dfkit.corpus``.
4. Nothing below the applications (``cli``, ``cli_train``, ``cli_options``, ``services``, ``demo``, ``report``,
   ``__main__``) imports an application, except ``KNOWN_APP_IMPORTS`` (none left: ``dfkit browse``'s command moved
   from ``dfkit.browse`` into the CLI, issue 11 step 4).
5. The graph between units (all imports above, exceptions included) has no cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "dfkit"

BASE = {"dfkit", "errors", "paths", "config", "taxonomy", "registry", "procs", "media"}
STAGES = {"ingest", "quality", "train", "browse"}
APPS = {"cli", "cli_train", "cli_options", "services", "demo", "report", "__main__"}

#: (importing module, imported module) -> why the stage-to-stage import stays
KNOWN_STAGE_IMPORTS = {
    ("dfkit.train.known_effect", "dfkit.quality.degrade"):
        "the known-effect check trains on crops degraded exactly as quality's degradations define them",
    ("dfkit.train.known_effect", "dfkit.quality.compute"):
        "the known-effect check scores the degraded crops with the quality metrics (compute_quality)",
    ("dfkit.train.known_effect", "dfkit.quality.run"):
        "the known-effect check scores with the weights the corpus's quality shards were made with "
        "(stored_weights)",
}

#: (importing module, imported module) -> why a non-application module imports an application
KNOWN_APP_IMPORTS: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return "dfkit" if len(parts) == 1 else parts[1]


def _resolve(module: str, node: ast.ImportFrom, is_pkg: bool) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges() -> dict[str, set[str]]:
    """module -> the dfkit modules it imports (anywhere in its body)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in modules.items():
        edges[mod]  # every module is a key, also one that imports no dfkit module
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, node, path.name == "__init__.py")
                targets = [target] if target else []
                # `from dfkit.corpus import codec` imports the submodule dfkit.corpus.codec
                targets += [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            else:
                continue
            for t in targets:
                if t == "dfkit" or t.startswith("dfkit."):
                    edges[mod].add(t)
    return edges


EDGES = import_edges()


def _cross(src_units, allowed) -> set[tuple[str, str]]:
    out = set()
    for mod, targets in EDGES.items():
        if _unit(mod) not in src_units:
            continue
        for t in targets:
            tu = _unit(t)
            if tu != _unit(mod) and tu not in allowed:
                out.add((mod, t))
    return out


def test_the_graph_was_read():
    assert "dfkit.corpus.codec" in EDGES["dfkit.corpus.reader"]
    assert "dfkit.corpus.writer" in EDGES["dfkit.quality.run"]
    assert len(EDGES) > 40


def test_corpus_imports_only_itself_and_the_base_modules():
    bad = _cross({"corpus"}, BASE)
    assert not bad, f"dfkit.corpus imports upwards: {sorted(bad)}"


def test_splits_builds_only_on_the_corpus():
    bad = _cross({"splits"}, BASE | {"corpus"})
    assert not bad, sorted(bad)


def _stage_imports() -> set[tuple[str, str]]:
    """Stage -> other stage imports, reduced to the imported module (``from dfkit.ingest.faces import x``)."""
    return {(m, t) for m, t in _cross(STAGES, BASE | {"corpus", "splits"}) if _unit(t) in STAGES}


def test_stages_do_not_import_each_other_except_the_known_imports():
    got = _stage_imports()
    unexpected = sorted(got - set(KNOWN_STAGE_IMPORTS))
    assert not unexpected, f"new stage-to-stage imports (go through dfkit.corpus, or list them): {unexpected}"
    # an exception is stale when its module still exists but no longer makes the import
    stale = sorted(k for k in set(KNOWN_STAGE_IMPORTS) - got if k[0] in EDGES)
    assert not stale, f"known exceptions that no longer exist (drop them from KNOWN_STAGE_IMPORTS): {stale}"


def test_stages_import_nothing_else_above_them():
    other = {(m, t) for m, t in _cross(STAGES, BASE | {"corpus", "splits"} | STAGES)}
    unexpected = sorted(other - set(KNOWN_APP_IMPORTS))
    assert not unexpected, unexpected


def test_only_applications_import_applications():
    got = _cross(set(BASE) | {"corpus", "splits"} | STAGES, set(BASE) | {"corpus", "splits"} | STAGES)
    got = {(m, t) for m, t in got if _unit(t) in APPS}
    assert got == set(KNOWN_APP_IMPORTS), sorted(got ^ set(KNOWN_APP_IMPORTS))


def _unit_graph(skip_units=()) -> dict[str, set[str]]:
    g: dict[str, set[str]] = defaultdict(set)
    for mod, targets in EDGES.items():
        for t in targets:
            a, b = _unit(mod), _unit(t)
            if a != b and b != "dfkit" and a not in skip_units:
                g[a].add(b)
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_units():
    # the package root (dfkit/__init__.py: __version__) is imported by the corpus manifest and imports nothing
    assert not EDGES.get("dfkit"), EDGES.get("dfkit")
    g = _unit_graph()
    assert not _cycles(g), _cycles(g)
