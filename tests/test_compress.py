"""compress_: what it converts, what it skips and why, overrides, and parallel encoding."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsecodec as sc  # noqa: E402
from sparsecodec.nn import SQConv2d, SQLinear  # noqa: E402


class Conv1D(nn.Module):
    """Hugging Face's transposed linear layer (weight stored as (in, out))."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(*x.shape[:-1], self.nf)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.proj = Conv1D(16, 32)
        self.head = nn.Linear(16, 16)
        self.tied = nn.Linear(16, 16)
        self.tied.weight = self.head.weight

    def forward(self, x):
        x = torch.relu(self.norm(self.conv(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.tied(self.head(self.proj(torch.relu(self.fc1(x)))))


def test_report_lists_converted_and_skipped_with_reasons():
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(2, 3, 8, 8)
    report = sc.compress_(model, sc.SQConfig(sparsity=0.5, bits=2))
    converted = {r.name for r in report.converted}
    assert converted == {"conv", "fc1", "proj"}
    reasons = {r.name: r.reason for r in report.skipped}
    assert "not supported" in reasons["norm"]
    assert "tied" in reasons["head"] and "tied" in reasons["tied"]
    assert isinstance(model.conv, SQConv2d) and isinstance(model.fc1, SQLinear) and isinstance(model.proj, SQLinear)
    assert model(x).shape == (2, 16)
    assert 0 < report.total_bits_per_weight() < 32
    assert "skipped" in str(report)
    again = sc.compress_(model, sc.SQConfig())
    assert {r.name for r in again.skipped if r.reason == "already compressed"} == {"conv", "fc1", "proj"}


def test_hf_conv1d_is_compressed_as_its_transpose():
    torch.manual_seed(1)
    model = nn.Sequential(Conv1D(10, 20))
    x = torch.randn(3, 20)
    w = model[0].weight.detach().clone()
    sc.compress_(model, sc.SQConfig(sparsity=0.0, bits=4, method="alternating"))
    decoded = model[0].weight.detach()
    assert decoded.shape == (10, 20)  # (out, in): the transpose of Conv1D's (in, out)
    assert (decoded - w.t()).norm() < 0.1 * w.norm()
    torch.testing.assert_close(model(x), x @ decoded.t() + model[0].bias, rtol=1e-5, atol=1e-5)


def test_per_layer_overrides_exact_regex_default_and_none():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    report = sc.compress_(
        model,
        {
            "0": sc.SQConfig(bits=1),
            "re:[12]": None,
            "_default": sc.SQConfig(bits=3),
        },
    )
    bits = {r.name: r.stats.get("config", {}).get("bits") for r in report.converted}
    assert bits == {"0": 1, "3": 3}
    assert {r.name for r in report.skipped} == {"1", "2"}
    model2 = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    report2 = sc.compress_(model2, {"0": sc.SQConfig()}, filter_fn=lambda m, name: True)
    assert "no config" in report2.skipped[0].reason
    model3 = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    report3 = sc.compress_(model3, sc.SQConfig(), filter_fn=lambda m, name: name == "1")
    assert [r.name for r in report3.converted] == ["1"] and report3.skipped[0].reason == "excluded by filter_fn"


# Worker processes are spawned, as on a cluster: forking a process whose OpenMP and torch thread
# pools are running can deadlock the child.
SPAWNED_PROCESSES = partial(ProcessPoolExecutor, mp_context=multiprocessing.get_context("spawn"))


@pytest.mark.parametrize("executor_cls", [ThreadPoolExecutor, SPAWNED_PROCESSES], ids=["threads", "processes"])
def test_executor_gives_the_same_model(executor_cls):
    torch.manual_seed(2)
    base = nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Conv2d(2, 4, 3, groups=2))
    serial = nn.Sequential(*[m for m in [nn.Linear(30, 40), nn.ReLU(), nn.Conv2d(2, 4, 3, groups=2)]])
    serial.load_state_dict(base.state_dict())
    sc.compress_(serial, sc.SQConfig(sparsity=0.7))
    with executor_cls(max_workers=2) as pool:
        sc.compress_(base, sc.SQConfig(sparsity=0.7), executor=pool)
    for a, b in zip(serial.state_dict().values(), base.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_config_round_trips_through_json_and_rejects_bad_values():
    cfg = sc.SQConfig(sparsity=0.8, bits=3, mask_format="lowrank", rank=4, tile=(64, 64), strategy="sparse")
    assert sc.SQConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="bits"):
        sc.SQConfig(bits=9)
    with pytest.raises(ValueError, match="rank and tile"):
        sc.SQConfig(rank=4)
    with pytest.raises(ValueError, match="unknown SQConfig fields"):
        sc.SQConfig.from_dict({"type": "SQConfig", "speed": 3})
    with pytest.raises(TypeError, match="nn.Module"):
        sc.compress_("model")
