"""The top-level API of the README: ``gf.unlearn(...)`` callable package, method classes."""
import torch

import graphforget as gf
from graphforget.unlearn import IFRU, METHODS, UnlearningRequest, get_unlearner


def test_callable_package_equals_method_class_and_function():
    graph = gf.load_dataset("demo")
    model = gf.build_model("mf", graph.num_users, graph.num_items, dim=8, seed=0)
    edges = graph.user_edges([3])
    a = gf.unlearn(model, graph, edges, method="ifru", k=1)
    b = IFRU(k=1).unlearn(model, graph, UnlearningRequest(users=[3]))
    c = gf.unlearn.unlearn(model, graph, edges, method="ifru", k=1)
    assert not torch.equal(a.model.embedding, model.embedding)
    assert torch.equal(a.model.embedding, b.model.embedding)
    assert torch.equal(a.model.embedding, c.model.embedding)
    assert a.graph.fingerprint() == b.graph.fingerprint()


def test_every_method_class_importable_from_package():
    import graphforget.unlearn as pkg

    for name, spec in METHODS.items():
        cls = getattr(pkg, spec.split(":")[1])
        assert isinstance(get_unlearner(name), cls)
