"""bench/run.py's page: a benchmark without results keeps the section and runs-table row the page already has,
and the LLaMA-Factory section renders its skip reason or its table."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "bench", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MACHINE = {"cpu": "cpu", "cores": 2, "usable_cores": 2, "memory_gb": 24, "os": "linux", "python": "3.11",
           "gpu": None, "torch": "2.13", "load_average": [1.0, 1.0, 1.0]}


def _run(name, ok=True):
    return {"command": f"python bench/{name}.py", "rc": 0 if ok else 1, "ok": ok, "wall_s": 5.0,
            "date": "2026-12-01T00:00:00+00:00", "quick": False, "machine": dict(MACHINE, commit="abc")}


def test_sections_without_results_are_kept(tmp_path):
    run = _run_module()
    first = run.render({"runs": {"kernels": _run("kernels")}, "machine": MACHINE, "date": "2026-11-30"},
                       {"kernels": {"device": "cpu", "device_type": "cpu", "dtype": "fp32", "torch": "2.13",
                                    "iters": 3, "rows": []}})
    page = tmp_path / "benchmarks.md"
    page.write_text(first)
    assert "| kernels | `python bench/kernels.py`" in first and "## Fused kernels" in first
    skipped = {"skipped": "llamafactory does not import under python: ModuleNotFoundError"}
    second = run.render({"runs": {"llamafactory": _run("llamafactory")}, "machine": MACHINE, "date": "2026-12-01"},
                        {"llamafactory": skipped}, run.previous_page(str(page)))
    kernels_section = first.split("## Fused kernels")[1].split("\n## ")[0]
    assert kernels_section in second  # the kernels benchmark did not run again: its last figures stay
    assert "| kernels | `python bench/kernels.py`" in second
    assert "Skipped: llamafactory does not import under python: ModuleNotFoundError." in second


@pytest.mark.subprocess
def test_llamafactory_benchmark_skips_cleanly_without_it(tmp_path):
    out = tmp_path / "lf.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_llamafactory.py"), "--lf-python",
                           str(tmp_path / "no-python"), "--json", str(out), "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "bench_llamafactory: skipped: " in proc.stdout
    assert "no-python" in json.loads(out.read_text())["skipped"]
