"""sc.save / sc.load of whole compressed models: identical outputs, also in a fresh process and
under torch.compile; damaged and foreign files are refused with a clear error."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from torch import nn  # noqa: E402

import sparsecodec as sc  # noqa: E402

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def mlp():
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10))

    def cnn():
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, groups=2),
                             nn.ReLU(), nn.Conv2d(32, 8, 1), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))
    """
)


@pytest.fixture(scope="module")
def models_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "models_for_test.py"
    path.write_text(MODELS)
    sys.path.insert(0, str(path.parent))
    import models_for_test

    yield path.parent, models_for_test
    sys.path.remove(str(path.parent))


@pytest.mark.parametrize("kind,shape", [("mlp", (4, 64)), ("cnn", (2, 3, 16, 16))])
def test_save_load_in_a_fresh_process_gives_identical_outputs(kind, shape, models_module, tmp_path):
    folder, models = models_module
    torch.manual_seed(0)
    model = getattr(models, kind)()
    sc.compress_(model, {"re:.*": sc.SQConfig(sparsity=0.8, bits=2), "0": sc.SQConfig(sparsity=0.5, bits=3)})
    x = torch.randn(*shape)
    expected = model(x).detach()
    path = tmp_path / f"{kind}.safetensors"
    sc.save(model, path)
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "y.pt")

    reloaded = sc.load(path, getattr(models, kind)())
    assert torch.equal(reloaded(x).detach(), expected)

    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {str(folder)!r})
        import models_for_test, sparsecodec as sc
        model = sc.load({str(path)!r}, models_for_test.{kind}())
        x = torch.load({str(tmp_path / "x.pt")!r}); y = torch.load({str(tmp_path / "y.pt")!r})
        assert torch.equal(model(x).detach(), y), "eager output differs"
        compiled = torch.compile(model, backend="eager")
        assert torch.allclose(compiled(x).detach(), y, rtol=1e-5, atol=1e-6), "compiled output differs"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_loading_never_re_encodes(models_module, tmp_path, monkeypatch):
    _, models = models_module
    model = models.mlp()
    sc.compress_(model, sc.SQConfig(sparsity=0.9))
    sc.save(model, tmp_path / "m.safetensors")
    import sparsecodec.formats.xor_codec as xc

    def forbidden(*a, **k):
        raise AssertionError("load must not encode")

    monkeypatch.setattr(xc, "encode", forbidden)
    monkeypatch.setattr(sc, "encode", forbidden)
    sc.load(tmp_path / "m.safetensors", models.mlp())


def _saved_mlp(models, tmp_path):
    model = models.mlp()
    sc.compress_(model, sc.SQConfig(sparsity=0.9))
    path = tmp_path / "m.safetensors"
    sc.save(model, path)
    return path


def test_damaged_and_foreign_files_are_refused(models_module, tmp_path):
    _, models = models_module
    path = _saved_mlp(models, tmp_path)
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF  # inside a stream's bytes
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises((ValueError, RuntimeError)):
        sc.load(bad, models.mlp())
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="safetensors"):
        sc.load(tmp_path / "junk.safetensors", models.mlp())
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a sparsecodec model"):
        sc.load(tmp_path / "plain.safetensors", nn.Linear(2, 2))


def test_a_flipped_byte_in_a_dense_tensor_is_caught(models_module, tmp_path):
    import json
    import struct

    _, models = models_module
    path = _saved_mlp(models, tmp_path)
    data = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    name = next(k for k in header if k.endswith("bias"))  # a plain float tensor, no stream CRC of its own
    start, end = header[name]["data_offsets"]
    data[8 + header_len + (start + end) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"damaged.*{name}"):
        sc.load(path, models.mlp())
