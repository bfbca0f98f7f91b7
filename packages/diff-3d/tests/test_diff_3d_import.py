"""Importing diff_3d must never trigger gsplat's CUDA build (gsplat compiles kernels on first use)."""

import subprocess
import sys


def test_import_does_not_load_gsplat():
    code = "import sys, diff_3d, diff_3d.cli; print('gsplat' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
