"""Output files are replaced atomically: an error or interrupt leaves the previous good file and no temp."""

import os

import pytest

import symgrad
from conftest import ROOT
from symgrad.render import write_atomic


def test_interrupt_during_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "mazur.py"
    target.write_text("previous good module\n")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        symgrad.generate(ROOT / "examples/mazur.toml", "numpy", tmp_path)
    assert target.read_text() == "previous good module\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_write_atomic_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    write_atomic(path, "one\n")
    write_atomic(path, b"two\n")
    assert path.read_bytes() == b"two\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]
