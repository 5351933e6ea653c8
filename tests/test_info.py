"""Build diagnostics: sparsecodec.build_info() and `python -m sparsecodec info`."""

from __future__ import annotations

import os
import subprocess
import sys

import sparsecodec as sc

from conftest import SIMD_LEVELS, available_simd_levels, best_simd_level


def test_build_info_reports_versions_and_runtime():
    info = sc.build_info()
    assert info["version"] == sc.__version__ == info["native_version"]
    assert info["stream_format_version"] == sc.FORMAT_VERSION
    assert info["simd_active"] in SIMD_LEVELS
    assert info["simd_detected"] in SIMD_LEVELS
    assert isinstance(info["openmp"], bool) and info["threads"] >= 1
    assert info["compiler"]


def test_simd_level_can_be_lowered_and_restored():
    detected = sc.build_info()["simd_detected"]
    assert sc.set_simd_level("scalar") == "scalar"
    assert sc.build_info()["simd_active"] == "scalar"
    assert sc.set_simd_level("avx512") == detected  # capped at what the CPU has
    if "avx2" in available_simd_levels():
        assert sc.set_simd_level("avx2") == "avx2"
    sc.set_simd_level(best_simd_level())
    try:
        sc.set_simd_level("sse9")
        raise AssertionError("expected ValueError")
    except ValueError as exc:
        assert "sse9" in str(exc)


def test_thread_setting():
    before = sc.get_num_threads()
    sc.set_num_threads(1)
    assert sc.get_num_threads() == 1
    sc.set_num_threads(before)


def test_module_info_command():
    out = subprocess.run([sys.executable, "-m", "sparsecodec", "info"], capture_output=True, text=True, check=True)
    assert "stream_format_version" in out.stdout and "simd_active" in out.stdout


def test_simd_environment_variable_caps_the_level():
    detected = sc.build_info()["simd_detected"]
    for wanted in ("scalar", available_simd_levels()[-1], "nonsense"):
        proc = subprocess.run(
            [sys.executable, "-c", "import sparsecodec as sc; print(sc.build_info()['simd_active'])"],
            env={**os.environ, "SPARSECODEC_SIMD": wanted},
            capture_output=True,
            text=True,
            check=True,
        )
        assert proc.stdout.strip() == (detected if wanted == "nonsense" else wanted)
