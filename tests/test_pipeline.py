"""The driver: one derivation per model shared by every consumer, backends that refuse unknown options."""

from pathlib import Path

import pytest

import symgrad
from symgrad import pipeline
from symgrad.core import derive as derive_module
from symgrad.errors import SpecError

EX = Path(__file__).resolve().parents[1] / "examples"


def test_backends_render_what_generate_writes(tmp_path):
    model = symgrad.load(EX / "mazur.toml")
    for target in ("numpy", "c"):
        files = pipeline.render(model, target)
        pipeline.generate(model, target, tmp_path)
        for rel, text in files.items():
            assert (tmp_path / rel).read_text() == text


def test_one_derivation_serves_both_backends_and_the_report(tmp_path, monkeypatch):
    calls = []
    real = derive_module.derive_layers
    monkeypatch.setattr(derive_module, "derive_layers", lambda m: calls.append(m) or real(m))
    model = symgrad.load(EX / "mazur.toml")
    symgrad.generate(model, "numpy", tmp_path)
    symgrad.generate(model, "c", tmp_path)
    symgrad.report(model, "md")
    assert len(calls) == 1
    assert symgrad.derive(model) is symgrad.derive(model)


@pytest.mark.parametrize("target, option", [("numpy", {"shape": "loops"}), ("c", {"shapes": "loops"}),
                                            ("c", {"shape": "spiral"}), ("numpy", {"dtype": "float16"})])
def test_unknown_options_are_errors(tmp_path, target, option):
    with pytest.raises(SpecError, match=next(iter(option))):
        symgrad.generate(EX / "mazur.toml", target, tmp_path, **option)
    assert not any(tmp_path.iterdir())


def test_unknown_target_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="numpy or c"):
        symgrad.generate(EX / "mazur.toml", "fortran", tmp_path)
