"""SQLinear / SQConv2d: outputs, gradients, torch.library registration, torch.compile, state_dict."""

from __future__ import annotations

import copy
import io
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch.nn import functional as F  # noqa: E402

import sparsecodec as sc  # noqa: E402
from sparsecodec.nn import SQConv2d, SQLinear  # noqa: E402


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_shape", [(1,), (7,), (3, 5), (512,)])
@pytest.mark.parametrize("bits,mask_format", [(1, "bitmap"), (2, "lowrank"), (3, "bitmap"), (4, "bitmap")])
def test_linear_matches_f_linear_with_the_decoded_weight(batch_shape, bits, mask_format):
    torch.manual_seed(bits)
    lin = torch.nn.Linear(67, 45)
    extra = {"rank": 4} if mask_format == "lowrank" else {}
    layer = SQLinear.from_linear(lin, sc.SQConfig(sparsity=0.8, bits=bits, mask_format=mask_format, **extra))
    w = torch.from_numpy(sc.decode(layer.encoded_weights()[0]))
    x = torch.randn(*batch_shape, 67)
    _close(layer(x), F.linear(x, w, layer.bias))
    assert "bits_per_weight=" in repr(layer)
    _close(layer.to_linear()(x), F.linear(x, w, layer.bias))


def test_linear_without_bias_and_other_dtypes():
    lin = torch.nn.Linear(16, 8, bias=False)
    layer = SQLinear.from_linear(lin, sc.SQConfig(sparsity=0.5))
    x = torch.randn(4, 16, dtype=torch.float64)
    y = layer(x)
    assert y.dtype == torch.float64 and layer.bias is None


def test_gradients_flow_to_the_input_and_bias_but_not_the_weight():
    torch.manual_seed(0)
    layer = SQLinear.from_linear(torch.nn.Linear(30, 20), sc.SQConfig(sparsity=0.7))
    w = layer.weight.detach()
    x = torch.randn(6, 30, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(6, 20)
    layer(x).backward(g)
    F.linear(x_ref, w, layer.bias.detach()).backward(g)
    _close(x.grad, x_ref.grad)
    _close(layer.bias.grad, g.sum(0))
    assert [n for n, _ in layer.named_parameters()] == ["bias"]
    with pytest.raises(RuntimeError, match="cannot be trained"):
        (layer.weight**2).sum().backward()


def test_opcheck_passes():
    layer = SQLinear.from_linear(torch.nn.Linear(24, 12), sc.SQConfig(sparsity=0.6))
    x = torch.randn(5, 24, requires_grad=True)
    torch.library.opcheck(torch.ops.sparsecodec.sq_linear, (x, layer.encoded, 12, "auto"))
    torch.library.opcheck(torch.ops.sparsecodec.sq_linear_input_grad, (torch.randn(5, 12), layer.encoded, 24))


def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    sc.compress_(model, sc.SQConfig(sparsity=0.8))
    x = torch.randn(4, 32)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    _close(compiled(x), model(x))


CONV_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=3, padding=1, stride=2),
    dict(kernel_size=(3, 5), padding=(1, 2), dilation=(2, 1)),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=4, padding="same", dilation=2),
    dict(kernel_size=3, padding="valid", bias=False),
    dict(kernel_size=3, padding=2, padding_mode="reflect"),
    dict(kernel_size=3, padding=1, padding_mode="circular", groups=2),
    dict(kernel_size=2, padding=1, padding_mode="replicate", stride=(2, 1)),
    dict(kernel_size=1),
    dict(kernel_size=1, groups=4),
]


@pytest.mark.parametrize("strategy", ["auto", "sparse", "dense"])
@pytest.mark.parametrize("kwargs", CONV_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_conv2d_matches_conv2d_with_the_decoded_weight(kwargs, strategy):
    # "dense" runs torch's convolution on the weight decoded for the call; the others the matmul op
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(8, 12, **kwargs)
    layer = SQConv2d.from_conv2d(conv, sc.SQConfig(sparsity=0.6, bits=2, strategy=strategy))
    x = torch.randn(2, 8, 11, 9, requires_grad=True)
    ref = layer.to_conv2d()
    got, want = layer(x), ref(x)
    _close(got, want)
    assert got.shape == conv(x).shape
    g = torch.randn_like(want)
    (grad_got,) = torch.autograd.grad(got, x, g)
    (grad_want,) = torch.autograd.grad(want, x, g)
    _close(grad_got, grad_want)


def test_conv2d_auto_decodes_the_weight_for_large_batches_and_not_when_compiling():
    torch.manual_seed(3)
    layer = SQConv2d.from_conv2d(torch.nn.Conv2d(4, 6, 3, padding=1), sc.SQConfig(sparsity=0.5, bits=2))
    small, large = torch.randn(1, 4, 5, 5), torch.randn(64, 4, 32, 32)
    assert not layer._decoded_conv_is_faster(small) and layer._decoded_conv_is_faster(large)
    ref = layer.to_conv2d()
    _close(layer(large), ref(large))
    compiled = torch.compile(layer, fullgraph=True, backend="eager")  # the op path: no graph break
    _close(compiled(large), ref(large))


def test_state_dict_round_trip_strict_and_weights_only(tmp_path):
    torch.manual_seed(3)
    layer = SQLinear.from_linear(torch.nn.Linear(40, 10), sc.SQConfig(sparsity=0.9, bits=2))
    other = SQLinear.from_linear(torch.nn.Linear(40, 10), sc.SQConfig(sparsity=0.5, bits=1))
    other.load_state_dict(layer.state_dict(), strict=True)
    x = torch.randn(3, 40)
    _close(other(x), layer(x))
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    other.load_state_dict(loaded, strict=True)
    _close(other(x), layer(x))
    assert other.to("cpu").encoded.dtype == torch.uint8


def test_layers_follow_in_place_writes_to_their_stream_and_run_under_inference_mode():
    """The parsed stream is remembered per buffer tensor and its version counter: a write into the
    buffer's bytes must be seen, and tensors made under inference mode (no version counter) work."""
    torch.manual_seed(4)
    layer = SQLinear.from_linear(torch.nn.Linear(40, 10, bias=False), sc.SQConfig(sparsity=0.5, bits=2))
    x = torch.randn(3, 40)
    before = layer(x)
    doubled = copy.deepcopy(layer.encoded_weights()[0])  # not the cached object the layer parsed
    doubled.scales = doubled.scales * 2
    with torch.no_grad():
        layer.encoded.copy_(torch.frombuffer(bytearray(doubled.to_bytes()), dtype=torch.uint8))
    _close(layer(x), 2 * before)
    with torch.inference_mode():
        made_there = SQLinear.from_linear(torch.nn.Linear(40, 10), sc.SQConfig(sparsity=0.5, bits=2))
        w = torch.from_numpy(sc.decode(made_there.encoded_weights()[0]))
        _close(made_there(x), F.linear(x, w, made_there.bias))
        _close(made_there(x), F.linear(x, w, made_there.bias))
        # an inference tensor has no version counter: a new stream written into it is seen by its CRC
        made_there.encoded = made_there.encoded.clone()  # the layers' own buffers are ordinary tensors
        assert made_there.encoded.is_inference()
        doubled = copy.deepcopy(made_there.encoded_weights()[0])
        doubled.scales = doubled.scales * 2
        made_there.encoded.copy_(torch.frombuffer(bytearray(doubled.to_bytes()), dtype=torch.uint8))
        _close(made_there(x), F.linear(x, 2 * w, made_there.bias))


def test_damaged_stream_in_a_state_dict_is_refused():
    layer = SQLinear.from_linear(torch.nn.Linear(20, 5), sc.SQConfig(sparsity=0.5))
    sd = layer.state_dict()
    bad = sd["encoded"].clone()
    bad[40] ^= 1
    sd["encoded"] = bad
    with pytest.raises(RuntimeError, match="checksum"):
        layer.load_state_dict(sd)


def test_import_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, sparsecodec, numpy; sparsecodec.encode(numpy.ones((4, 4), 'float32')); "
        "print('torch' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_jit_trace_records_the_op_not_a_constant():
    torch.manual_seed(4)
    layer = SQLinear.from_linear(torch.nn.Linear(16, 8), sc.SQConfig(sparsity=0.5))
    conv = SQConv2d.from_conv2d(torch.nn.Conv2d(3, 5, 3, padding=1), sc.SQConfig(sparsity=0.5, strategy="dense"))
    for module, shape in ((layer, (4, 16)), (conv, (2, 3, 9, 9))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes about Python values
            traced = torch.jit.trace(module, torch.randn(shape))
        fresh = torch.randn(shape)
        _close(traced(fresh), module(fresh))


def test_conv2d_decoded_path_computes_in_float32_for_low_precision_inputs():
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)  # a float32 bias would promote the output
    layer = SQConv2d.from_conv2d(conv, sc.SQConfig(sparsity=0.5, strategy="dense"))
    x = torch.randn(2, 4, 7, 7).to(torch.bfloat16)
    want = layer.to_conv2d()(x.float()).to(torch.bfloat16)
    got = layer(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, want)
