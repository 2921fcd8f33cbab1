"""dfkit.registry.Registry: one name per unit, duplicates refused, unknown names listed, modules discovered once."""

from __future__ import annotations

import sys
import textwrap
import threading

import pytest

from dfkit import registry as registry_mod
from dfkit.errors import DfkitError
from dfkit.registry import RegistrationError, Registry, UnknownNameError


def _unit(name: str):
    return type("Unit_" + name, (), {"name": name})


def test_register_by_class_attribute_list_get_create():
    reg = Registry("widget")
    a, b = _unit("b_knob"), _unit("a_dial")
    assert reg.register(a) is a and reg.register(b) is b
    assert reg.list() == ["a_dial", "b_knob"]
    assert reg.list("a_*") == ["a_dial"] and reg.list(lambda cls: cls is a) == ["b_knob"]
    assert reg.get("b_knob") is a and isinstance(reg.create("a_dial"), b)
    assert "a_dial" in reg and len(reg) == 2 and list(reg) == ["a_dial", "b_knob"]
    assert reg.items() == [("a_dial", b), ("b_knob", a)]


def test_register_by_argument_for_factories():
    reg = Registry("maker", named_by="argument")

    @reg.register("double")
    def make(x):
        return 2 * x

    assert reg.create("double", 21) == 42 and reg.get("double") is make
    with pytest.raises(TypeError, match="decorator's argument"):
        reg.register(make)
    with pytest.raises(TypeError, match="`name` attribute"):
        Registry("widget").register("knob")


def test_duplicate_name_refused_with_both_definitions():
    reg = Registry("widget")
    reg.register(_unit("knob"))
    other = type("OtherKnob", (), {"name": "knob"})
    with pytest.raises(RegistrationError, match=r"widget 'knob' is registered twice: by .*Unit_knob and by .*OtherKnob"):
        reg.register(other)
    assert reg.get("knob").__name__ == "Unit_knob"
    with pytest.raises(RegistrationError, match="has no name"):
        reg.register(_unit(""))
    assert issubclass(RegistrationError, DfkitError)


def test_same_definition_again_is_not_a_duplicate():
    # what re-importing a module does: a new class object with the same module and qualname
    reg = Registry("widget")
    first = _unit("knob")
    again = _unit("knob")
    reg.register(first)
    reg.register(first)
    reg.register(again)
    assert reg.get("knob") is again


def test_unknown_name_lists_the_known_names():
    reg = Registry("widget")
    for n in ("knob", "dial", "lever"):
        reg.register(_unit(n))
    with pytest.raises(UnknownNameError) as ei:
        reg.create("knb")
    msg = str(ei.value)
    assert msg == "unknown widget 'knb' (did you mean 'knob'?); known: dial, knob, lever"
    # one line on the command line, and still catchable as the types the old lookups raised
    assert isinstance(ei.value, DfkitError) and isinstance(ei.value, KeyError) and isinstance(ei.value, ValueError)
    with pytest.raises(UnknownNameError, match="known: none"):
        Registry("gadget").get("x")


def _package(tmp_path, name: str, modules: dict[str, str]):
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod, src in modules.items():
        (pkg / f"{mod}.py").write_text(textwrap.dedent(src))
    return pkg


@pytest.fixture
def widget_pkg(tmp_path, monkeypatch):
    """A throwaway package ``regtest_widgets`` whose modules register into ``regtest_widgets.REG``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    unit = """
        import regtest_widgets as pkg

        pkg.IMPORTS.append(__name__)

        @pkg.REG.register
        class {cls}:
            name = "{name}"
        """
    pkg = _package(tmp_path, "regtest_widgets", {
        "knob": unit.format(cls="Knob", name="knob"),
        "dial": unit.format(cls="Dial", name="dial"),
        "_private": "raise RuntimeError('private modules are not imported')\n",
        "helpers": "raise RuntimeError('skipped modules are not imported')\n",
    })
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from dfkit.registry import Registry

        IMPORTS = []
        REG = Registry("widget", __name__, skip=("helpers",))
        """))
    import regtest_widgets

    yield pkg, regtest_widgets
    for m in [m for m in sys.modules if m == "regtest_widgets" or m.startswith("regtest_widgets.")]:
        del sys.modules[m]


def test_discovery_imports_the_package_once(widget_pkg, monkeypatch):
    pkg_dir, pkg = widget_pkg
    scans = []
    real = registry_mod.pkgutil.iter_modules
    monkeypatch.setattr(registry_mod.pkgutil, "iter_modules", lambda *a, **k: scans.append(1) or real(*a, **k))
    assert pkg.IMPORTS == []  # lazy: nothing imported before the first lookup
    assert pkg.REG.list() == ["dial", "knob"]
    assert sorted(pkg.IMPORTS) == ["regtest_widgets.dial", "regtest_widgets.knob"]
    (pkg_dir / "lever.py").write_text("raise RuntimeError('a module added later is not rescanned')\n")
    assert pkg.REG.list() == ["dial", "knob"] and "knob" in pkg.REG and pkg.REG.get("dial").name == "dial"
    with pytest.raises(UnknownNameError, match="known: dial, knob"):
        pkg.REG.get("lever")
    assert len(scans) == 1 and len(pkg.IMPORTS) == 2


def test_discovery_from_threads_happens_once(widget_pkg, monkeypatch):
    _, pkg = widget_pkg
    scans = []
    real = registry_mod.pkgutil.iter_modules
    monkeypatch.setattr(registry_mod.pkgutil, "iter_modules", lambda *a, **k: scans.append(1) or real(*a, **k))
    results = []
    threads = [threading.Thread(target=lambda: results.append(pkg.REG.list())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [["dial", "knob"]] * 8 and len(scans) == 1


def test_duplicate_across_modules_names_both(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    unit = """
        from regtest_dups import REG

        @REG.register
        class {cls}:
            name = "knob"
        """
    pkg = _package(tmp_path, "regtest_dups", {"a": unit.format(cls="A"), "b": unit.format(cls="B")})
    (pkg / "__init__.py").write_text("from dfkit.registry import Registry\nREG = Registry('widget', __name__)\n")
    try:
        import regtest_dups

        with pytest.raises(RegistrationError, match=r"'knob' is registered twice: by regtest_dups\.a\.A and by "
                                                    r"regtest_dups\.b\.B"):
            regtest_dups.REG.list()
    finally:
        for m in [m for m in sys.modules if m.startswith("regtest_dups")]:
            del sys.modules[m]


def test_the_three_kinds_share_it():
    from dfkit.ingest.base import ADAPTERS
    from dfkit.quality.base import METRICS
    from dfkit.train.backbones.registry import BACKBONES

    assert all(isinstance(r, Registry) for r in (ADAPTERS, METRICS, BACKBONES))
    assert (ADAPTERS.named_by, METRICS.named_by, BACKBONES.named_by) == ("attribute", "attribute", "argument")
    for reg in (ADAPTERS, METRICS):  # named by the class's `name`, nowhere else
        for name, cls in reg.items():
            assert cls.name == name, (reg.kind, name)
    for name, spec in BACKBONES.items():  # named by the decorator's argument
        assert spec.name == name
