"""The top-level API of the README: ``gf.unlearn(...)`` callable package, method classes."""
from pathlib import Path

import pytest
import torch

import graphforget as gf
from graphforget.unlearning import IFRU, METHODS, Unlearner, UnlearningRequest, get_unlearner


def test_unlearn_function_equals_method_class():
    """``graphforget.unlearn`` is a plain function (the methods live in the
    ``graphforget.unlearning`` package, which is a plain module)."""
    import types

    import graphforget.unlearning as pkg

    graph = gf.load_dataset("demo")
    model = gf.build_model("mf", graph.num_users, graph.num_items, dim=8, seed=0)
    edges = graph.user_edges([3])
    a = gf.unlearn(model, graph, edges, method="ifru", k=1)
    b = IFRU(k=1).unlearn(model, graph, UnlearningRequest(users=[3]))
    c = pkg.unlearn(model, graph, edges, method="ifru", k=1)
    assert isinstance(gf.unlearn, types.FunctionType) and type(pkg) is types.ModuleType
    assert gf.unlearn is pkg.unlearn
    assert not torch.equal(a.model.embedding, model.embedding)
    assert torch.equal(a.model.embedding, b.model.embedding)
    assert torch.equal(a.model.embedding, c.model.embedding)
    assert a.graph.fingerprint() == b.graph.fingerprint()


def test_every_method_class_importable_from_package():
    import graphforget.unlearning as pkg

    for name, spec in METHODS.items():
        cls = getattr(pkg, spec.split(":")[1])
        assert isinstance(get_unlearner(name), cls)


class _Allocating(Unlearner):
    """Writes ``mib`` MiB of tensor memory (touched, so resident) inside the call."""

    name = "allocating"

    def __init__(self, mib: int) -> None:
        super().__init__(mib=mib)
        self.mib = mib

    def _unlearn(self, model, graph, edges, report, timer):
        block = torch.ones(self.mib * 2**20 // 4)  # float32
        report.notes.append(f"sum {float(block[::4096].sum())}")
        del block
        return graph.remove_edges(edges)


def test_report_peak_memory_counts_tensor_memory_on_cpu():
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak resident memory needs Linux /proc")
    graph = gf.load_dataset("demo")
    model = gf.build_model("mf", graph.num_users, graph.num_items, dim=8, seed=0)
    edges = graph.user_edges([3])
    big = _Allocating(256).unlearn(model, graph, edges).report
    small = _Allocating(1).unlearn(model, graph, edges).report  # the high-water mark was reset
    assert 200 <= big.peak_memory_mb < 1024
    assert small.peak_memory_mb < 64
    assert "peak_mem=" in big.summary() and "MB" in big.summary()
