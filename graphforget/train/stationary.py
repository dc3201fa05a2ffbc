r"""Stationarity: how far a model is from a stationary point of its objective, and the
finish that takes it there.

Influence and Newton unlearning assume :math:`\nabla\mathcal{L}(\theta; \mathcal{D}) = 0` at the
trained model (:mod:`graphforget.train.objective`); a model stopped early is not such a point
(on ml100k LightGCN-2 after 5 epochs :math:`\lVert\nabla\mathcal{L}\rVert = 51` for
:math:`\lVert\theta\rVert = 73`), and an influence step from it does not head for the retrain.

* :func:`stationarity` reports :math:`\lVert\nabla_E\mathcal{L}\rVert`, :math:`\lVert E\rVert`
  and their ratio ``grad_norm_rel`` at the model's own precision (float64 arithmetic).
* :func:`stationary_finish` minimises :math:`\mathcal{L}` over every ego row — full batch,
  float64, L-BFGS with strong-Wolfe line search, the fixed negatives of the objective — from the
  early-stopped model until ``grad_norm_rel <= gtol``. L-BFGS runs in the row-scaled variables
  :math:`y_v = e_v \sqrt{c_v + 1}` (:math:`c_v` the node's sample count): the curvature of a
  row grows with how often it is sampled, and the scaling evens it out (half the iterations on
  the demo data, measured). NGCF's weight matrices stay fixed, as in the unlearners, which
  never move them.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

from ..data.graph import InteractionGraph
from ..models import RecModel
from .objective import FullObjective, Objective, SampleSet, node_counts


def _work_model(model: RecModel) -> RecModel:
    """``model`` itself for linear propagation (only ``propagate`` is called, on given
    embeddings), else a float64 copy (NGCF's weights enter the products)."""
    if model.linear_propagation:
        return model
    return copy.deepcopy(model).to(torch.float64)


@torch.no_grad()
def stationarity(model: RecModel, graph: InteractionGraph, objective: Objective,
                 samples: Optional[SampleSet] = None) -> dict:
    """``{"grad_norm", "param_norm", "grad_norm_rel"}`` of :math:`\\mathcal{L}` w.r.t. the ego
    embeddings at the model's parameters (as stored: a float32 model is rounded to float32)."""
    samples = objective.samples(graph) if samples is None else samples
    device = model.embedding.device
    f = FullObjective(_work_model(model), graph, samples, objective.weight_decay, torch.float64, device)
    ego = model.embedding.detach().to(torch.float64)
    _, grad = f(ego)
    g, t = float(grad.norm()), float(ego.norm())
    return {"grad_norm": g, "param_norm": t, "grad_norm_rel": g / t if t > 0 else float("nan")}


@dataclass
class FinishResult:
    """What the stationary finish did: L-BFGS ``iterations`` and objective ``evaluations``,
    ``seconds``, the relative gradient norm before and after, and whether ``gtol`` was met."""

    iterations: int
    evaluations: int
    seconds: float
    grad_norm_rel_start: float
    grad_norm_rel: float
    gtol: float
    converged: bool
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def stationary_finish(model: RecModel, graph: InteractionGraph, objective: Objective,
                      gtol: float = 1e-5, max_iter: int = 20000, max_seconds: Optional[float] = None,
                      history: int = 20, chunk: int = 25,
                      log: Optional[Callable[[str], None]] = None) -> FinishResult:
    """Minimise :math:`\\mathcal{L}` over ``model.embedding`` in place until
    ``‖∇L‖ ≤ gtol·‖E‖`` (module docstring).

    Args:
        gtol: relative gradient tolerance, checked at the model's own precision at the end.
        max_iter: L-BFGS iteration cap; ``max_seconds``: wall-time cap.
        history: L-BFGS memory (pairs of ``[N, d]`` float64 vectors kept).
        chunk: iterations between convergence checks (and ``log`` lines).
        log: receives one progress line per chunk.
    """
    if not gtol > 0:
        raise ValueError(f"gtol must be positive, got {gtol}")
    t0 = time.perf_counter()
    device = model.embedding.device
    samples = objective.samples(graph)
    f = FullObjective(_work_model(model), graph, samples, objective.weight_decay, torch.float64, device)
    scale = (node_counts(samples, model.num_users, model.num_nodes).to(device, torch.float64) + 1.0
             ).rsqrt().unsqueeze(1)
    x = (model.embedding.detach().to(torch.float64) / scale).requires_grad_(True)  # y = e / scale
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=chunk, history_size=history,
                            line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)
    state = {"rel": float("nan"), "loss": float("nan")}

    def closure():
        ego = x.detach() * scale
        loss, grad = f(ego)
        x.grad = grad * scale
        state["loss"] = loss
        state["rel"] = float(grad.norm()) / max(float(ego.norm()), 1e-300)
        return torch.tensor(loss, dtype=torch.float64)

    closure()
    start, iters, note = state["rel"], 0, ""
    last_loss = state["loss"]
    while state["rel"] > gtol:
        if iters >= max_iter:
            note = f"stopped after max_iter={max_iter} iterations"
            break
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            note = f"stopped after max_seconds={max_seconds:g}"
            break
        opt.step(closure)
        done = int(opt.state[x]["n_iter"])
        progressed = done > iters
        iters = done
        if log:
            log(f"stationary finish: iteration {iters}, loss {state['loss']:.6g}, "
                f"|grad|/|theta| {state['rel']:.3e} (target {gtol:g})")
        if not progressed or not math.isfinite(state["loss"]) or (
                state["loss"] >= last_loss and state["rel"] > gtol and not progressed):
            note = "L-BFGS made no progress (line search failed)"
            break
        last_loss = state["loss"]
    with torch.no_grad():
        model.embedding.copy_((x.detach() * scale).to(model.embedding.dtype))
    final = stationarity(model, graph, objective, samples)["grad_norm_rel"]
    if final > gtol and not note:
        note = (f"gtol met in float64 ({state['rel']:.2e}) but not after rounding to "
                f"{str(model.embedding.dtype).replace('torch.', '')} ({final:.2e})")
    return FinishResult(iterations=iters, evaluations=f.evaluations,
                        seconds=time.perf_counter() - t0, grad_norm_rel_start=start,
                        grad_norm_rel=final, gtol=float(gtol), converged=final <= gtol, note=note)


__all__ = ["stationarity", "stationary_finish", "FinishResult"]
