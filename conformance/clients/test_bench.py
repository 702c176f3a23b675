"""The benchmark script runs end to end (with tiny counts and debug binaries: this checks the
machinery and the report, never the numbers)."""
import json
import os
import subprocess
import sys
import tempfile

from harness import ROOT


def test_quick_benchmark_writes_its_report():
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, KORVET_BENCH_BINARIES=os.path.join(ROOT, "target", "debug"))
        done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--quick", "--no-build", "--out", out],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
        assert len(results["produce"]) == 16
        assert all(r["failed"] == 0 and r["records"] > 0 for r in results["produce"])
        assert all(c["records"] > 0 for c in results["consume"])
        with open(os.path.join(out, "results.md")) as f:
            report = f.read()
        assert "| target | measured | verdict |" in report
        assert os.path.getsize(os.path.join(out, "results.png")) > 10_000
