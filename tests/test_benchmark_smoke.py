"""The benchmark script runs end to end on the smallest config and its implementations agree (no timing asserts)."""

import re
import subprocess
import sys

from conftest import ROOT


def test_benchmark_quick_run_prints_a_table_and_agreeing_gradients():
    res = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--rounds", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "| 2-2-2, b=1 |" in out and "Targets:" in out
    agreement = re.search(r"- 2-2-2, b=1 \(\d+ rounds[^)]*\): (.*)", out).group(1)
    diffs = [float(v) for v in re.findall(r" (\d\.\de[-+]\d+)", agreement)]
    assert diffs and max(diffs) < 1e-12


def test_hvp_benchmark_rows_and_table(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from second_order import bench_hvp, hvp_lines

    row = bench_hvp("2-3-2", (2, 3, 2), 4, 1, set(), tmp_path)
    assert set(row["times"]) >= {"NumPy hvp", "NumPy gradient"}
    assert all(v < 1e-12 for v in row["agree"].values())
    text = "\n".join(hvp_lines([row], set()))
    assert "| 2-3-2, b=4 |" in text and "JAX is not installed" in text


def test_graph_hvp_benchmark_row(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from second_order import bench_graph_hvp, hvp_lines

    row = bench_graph_hvp("LeNet-5", 2, 1, set(), tmp_path)
    assert set(row["times"]) >= {"NumPy hvp", "NumPy gradient"}
    assert all(v < 1e-12 for v in row["agree"].values())
    assert ("C hvp (Python)" in row["times"]) == ("C hvp" in row["agree"]) != bool(row["notes"])
    text = "\n".join(hvp_lines([row], set()))
    assert "| LeNet-5, b=2 |" in text
