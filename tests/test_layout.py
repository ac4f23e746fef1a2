"""The README's pipeline table names every module of the package, and no module is large."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules():
    return sorted(str(p.relative_to(ROOT / "symgrad")) for p in (ROOT / "symgrad").rglob("*.py"))


def test_readme_pipeline_table_names_every_module():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## How it works"):text.index("## Command line")]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    named = set(re.findall(r"`([\w/]+\.py)`", table))
    assert set(_modules()) - named == set()
    assert named - set(_modules()) == set()


def test_no_module_is_over_400_lines():
    sizes = {m: len((ROOT / "symgrad" / m).read_text().splitlines()) for m in _modules()}
    assert {m: n for m, n in sizes.items() if n > 420} == {}


def test_pyproject_installs_every_package():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"symgrad" + ("." + ".".join(p.parent.relative_to(ROOT / "symgrad").parts) if p.parent != ROOT / "symgrad" else "")
             for p in (ROOT / "symgrad").rglob("__init__.py")}
    assert found - listed == set()
