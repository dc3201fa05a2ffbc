"""Method options come from the constructor signature (``Unlearner.get_params``), each written
once: every method stores its constructor arguments as attributes and the report records them."""
from __future__ import annotations

import importlib
import inspect

import pytest

import graphforget as gf
from graphforget.train import TrainConfig
from graphforget.unlearning import METHODS, Unlearner, get_unlearner
from graphforget.unlearning.base import param_names


def _class(name: str):
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _signature_defaults(klass) -> dict:
    """Defaults of every parameter along the ``**options`` chain of ``klass``'s constructors."""
    out = {}
    for base in klass.__mro__:
        init = base.__dict__.get("__init__")
        if init is None or base is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name in param_names(klass) and p.name not in out and p.default is not p.empty:
                out[p.name] = p.default
    return out


@pytest.mark.parametrize("name", sorted(METHODS))
def test_get_params_round_trips_the_defaults(name):
    unlearner = get_unlearner(name)
    params = unlearner.get_params()
    assert list(params) == param_names(type(unlearner)) and "seed" in params
    again = get_unlearner(name, **params)
    assert again.get_params() == params
    assert type(again)(**params).get_params() == params
    # the stored defaults are the signature's (up to a resolved default: IF's coupling=None
    # is the class's default_coupling)
    for key, default in _signature_defaults(type(unlearner)).items():
        if default is not None or key != "coupling":
            assert params[key] == default, (name, key)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_report_records_get_params(name, monkeypatch):
    options = {"seed": 3}
    if name in ("retrain", "finetune"):
        options["config"] = TrainConfig(epochs=1, progress=False)
    unlearner = get_unlearner(name, **options)
    graph = gf.load_dataset("demo")
    model = gf.build_model("mf", graph.num_users, graph.num_items, dim=4, seed=0)
    recorded = {}

    def fake(model, graph, edges, report, timer):  # the options as the method's work starts
        recorded.update(report.options)
        return graph.remove_edges(edges)

    monkeypatch.setattr(unlearner, "_unlearn", fake)
    res = unlearner.unlearn(model, graph, graph.user_edges([3]))
    assert recorded == unlearner.get_params() and recorded["seed"] == 3
    assert res.report.options == unlearner.get_params()
    legacy = unlearner.options  # the JSON-ready view: no seed, a TrainConfig as its dict
    assert "seed" not in legacy and set(legacy) == set(recorded) - {"seed"}
    if "config" in options:
        assert legacy["config"] == options["config"].to_dict()
        assert res.report.to_dict()["options"]["config"]["epochs"] == 1


def test_passed_on_options_of_a_subclass_are_still_params():
    """A subclass written the old way (options passed on to ``Unlearner.__init__`` by hand)."""

    class Old(Unlearner):
        name = "old"

        def __init__(self, steps: int = 3, **kw) -> None:
            super().__init__(steps=steps, **kw)

    old = Old(steps=2, seed=5, extra=1.5)
    assert old.steps == 2 and old.extra == 1.5
    assert old.get_params() == {"steps": 2, "seed": 5, "extra": 1.5}
    assert old.options == {"steps": 2, "extra": 1.5}


def test_a_constructor_argument_without_attribute_is_reported():
    class Forgets(Unlearner):
        def __init__(self, rate: float = 0.1, seed: int = 0) -> None:
            super().__init__(seed=seed)

    with pytest.raises(AttributeError, match="'rate'"):
        Forgets().get_params()


def test_options_are_not_repeated_by_hand():
    """No built-in method passes its options to ``Unlearner.__init__`` besides ``seed``."""
    for name in METHODS:
        unlearner = get_unlearner(name)
        assert unlearner._passed_options == (), name
