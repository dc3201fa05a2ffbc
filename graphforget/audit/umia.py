r"""Per-edge membership inference with shadow retrains (U-MIA), and retrains to compare with.

The population attack of :mod:`.membership` asks whether deleted edges look like training data
*on average*; an unlearned model can pass it while every deleted edge still sits where only a
model trained on it would put it. Following the per-example attack of Hayes et al. (2024,
"Inexact unlearning needs more careful evaluations", U-LiRA), adapted to edges:

* :math:`R` **shadow retrains** :math:`S_1..S_R` on the remaining data — the recipe of the
  original model (``model.recipe``) with independent seeds — give each deleted edge
  :math:`e = (u, i)` a reference distribution of its score (the logit
  :math:`\hat{y}_{ui} = \langle z_u, z_i \rangle`), fitted as a Gaussian
  :math:`\mathcal{N}(\mu_e, \sigma_e^2)`;
* a model's per-edge statistic is the calibrated distance :math:`t_e(M) = |\hat{y}_e(M) -
  \mu_e| / \sigma_e` — how far the model puts the edge from where retraining puts it, in units
  of retraining's own randomness;
* the attack's ROC-AUC separates :math:`\{t_e(M)\}` from the same statistics of a **held-out
  retrain** :math:`H` (not among the shadows): ``umia_auc`` = 0.5 means the model treats the
  deleted edges as a retrain does. Above 0.5 the model keeps them apart (a model that forgot
  nothing); well *below* 0.5 it is suspiciously *close* to the retrain mean — e.g. a zeroed row
  scores every edge at 0 where a retrain's fresh random row spreads them — which is just as
  distinguishable. The verdict is therefore two-sided, with the band :math:`\pm 2\,SE_0`,
  :math:`SE_0 = \sqrt{(2m + 1) / (12 m^2)}` the null standard error of an AUC of ``m`` against
  ``m`` scores; a second held-out retrain (the **control**) must and does land inside it.

The statistic uses scores alone — no degree or other graph feature that would give a deleted
user away by its missing edges.

**Deterministic retraining.** Under the stationary recipe the retrains may all reach the same
minimiser (equal scores up to the finish's tolerance). Then :math:`\sigma_e \approx 0`, a
variance the recipe does not have, and the AUC says nothing; the audit says so
(``deterministic``) and reports the distance to that unique retrain in score space instead:
``score_error`` :math:`= \mathrm{mean}_e |\hat{y}_e(M) - \mu_e| / \mathrm{mean}_e
|\hat{y}_e(\text{original}) - \mu_e|` (0 = the retrain, 1 = forgot nothing).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from ..data.graph import InteractionGraph
from ..metrics import auc
from ..models import RecModel
from .utility import check_edges, representations

#: a recipe whose shadow score spread is below this fraction of the original's deletion
#: effect (medians over the deleted edges) is treated as deterministic
DETERMINISTIC_RATIO = 1e-2


@torch.no_grad()
def edge_scores(model: RecModel, graph: InteractionGraph, edges: Tensor) -> Tensor:
    """Scores (logits) ``[m]`` of ``edges`` under ``model`` propagated on ``graph`` (float64, CPU)."""
    out = representations(model, graph)
    dev = out.device
    return model.score(edges[0].to(dev), edges[1].to(dev), out).double().cpu()


def null_auc_se(m: int, n: Optional[int] = None) -> float:
    """Standard error of the ROC-AUC of ``m`` against ``n`` (default ``m``) exchangeable
    scores: :math:`\\sqrt{(m + n + 1) / (12 m n)}`."""
    n = m if n is None else n
    return math.sqrt((m + n + 1) / (12.0 * m * n)) if m and n else float("nan")


def retrain_seeds(original: RecModel, count: int, offset: int = 1000) -> list[int]:
    """``count`` seeds for reference retrains, never the original's (its recipe's seed + 1000 + r)."""
    base = int((getattr(original, "recipe", None) or {}).get("seed", 0))
    return [base + offset + r for r in range(count)]


def train_retrains(original: RecModel, graph_before: InteractionGraph, deleted: Tensor, count: int,
                   seeds: Optional[Sequence[int]] = None,
                   log: Optional[Callable[[str], None]] = None) -> list[RecModel]:
    """``count`` retrains on ``graph_before`` minus ``deleted`` with the original's recipe
    (:class:`~graphforget.unlearning.retrain.Retrain`) and independent seeds; ``log`` gets one
    line per retrain (progress)."""
    from ..unlearning import get_unlearner

    seeds = list(seeds) if seeds is not None else retrain_seeds(original, count)
    own = (getattr(original, "recipe", None) or {}).get("seed")
    if own is not None and int(own) in seeds:
        raise ValueError(f"reference retrains must not share the original's seed {own}")
    models = []
    for r, seed in enumerate(seeds):
        res = get_unlearner("retrain", seed=seed).unlearn(original, graph_before, deleted)
        models.append(res.model)
        if log:
            log(f"retrain {r + 1}/{len(seeds)} (seed {seed}) in {res.report.seconds_total:.1f}s")
    return models


@dataclass
class ShadowScores:
    """The shadows' per-edge Gaussian fit: ``mean`` and ``std`` ``[m]`` (float64)."""

    mean: Tensor
    std: Tensor
    count: int

    @classmethod
    def fit(cls, scores: Tensor) -> "ShadowScores":
        """From ``[R, m]`` shadow scores (R ≥ 2)."""
        if scores.shape[0] < 2:
            raise ValueError(f"need at least 2 shadow retrains, got {scores.shape[0]}")
        return cls(scores.mean(0), scores.std(0), int(scores.shape[0]))

    def statistic(self, scores: Tensor) -> Tensor:
        """:math:`t_e = |\\hat{y}_e - \\mu_e| / \\sigma_e` (``σ`` floored at 1e-12)."""
        return (scores - self.mean).abs() / self.std.clamp(min=1e-12)


@dataclass
class UMIAResult:
    """One model's per-edge U-MIA (see the module docstring)."""

    auc: float
    band: float
    verdict: str
    score_error: float
    median_statistic: float

    def to_dict(self) -> dict:
        return asdict(self)


def verdict_of(value: float, centre: float, band: float) -> str:
    """``"within"`` if ``|value - centre| <= band``, else ``"above"`` / ``"below"``."""
    if not math.isfinite(value):
        return "n/a"
    if abs(value - centre) <= band:
        return "within"
    return "above" if value > centre else "below"


@dataclass
class UMIA:
    """Fitted per-edge attack for one deletion: shadows, the held-out reference retrain's
    statistics, and the original's deletion effect (for ``score_error``)."""

    edges: Tensor
    shadows: ShadowScores
    reference: Tensor  # t_e of the held-out retrain
    effect: Tensor  # |ŷ_e(original) − μ_e|
    deterministic: bool
    notes: list = field(default_factory=list)

    @classmethod
    def fit(cls, shadow_models: Sequence[RecModel], held_out: RecModel, original: RecModel,
            graph_before: InteractionGraph, graph_after: InteractionGraph, deleted) -> "UMIA":
        edges = check_edges(deleted, graph_before, "deleted")
        scores = torch.stack([edge_scores(m, graph_after, edges) for m in shadow_models])
        shadows = ShadowScores.fit(scores)
        effect = (edge_scores(original, graph_before, edges) - shadows.mean).abs()
        spread, moved = float(shadows.std.median()), float(effect.median())
        deterministic = spread < DETERMINISTIC_RATIO * max(moved, 1e-12)
        notes = [f"{shadows.count} shadow retrains: median per-edge score spread {spread:.3g}, "
                 f"median deletion effect of the original {moved:.3g}"]
        if deterministic:
            notes.append("retraining is deterministic under this recipe (every retrain reaches "
                         "the same scores): no seed variance to calibrate against, so U-MIA "
                         "AUCs are replaced by the distance to that unique retrain (score_error)")
        return cls(edges, shadows, shadows.statistic(edge_scores(held_out, graph_after, edges)),
                   effect, deterministic, notes)

    def assess(self, model: RecModel, graph: InteractionGraph) -> UMIAResult:
        """The attack on ``model`` propagated on ``graph`` (its own graph)."""
        s = edge_scores(model, graph, self.edges)
        t = self.shadows.statistic(s)
        err = float((s - self.shadows.mean).abs().mean() / self.effect.mean().clamp(min=1e-12))
        m = int(self.edges.shape[1])
        band = 2.0 * null_auc_se(m)
        if self.deterministic:
            return UMIAResult(float("nan"), band, "n/a", err, float(t.median()))
        a = auc(torch.cat([t, self.reference]), torch.cat([torch.ones(m), torch.zeros(m)]))
        return UMIAResult(a, band, verdict_of(a, 0.5, band), err, float(t.median()))


__all__ = ["UMIA", "UMIAResult", "ShadowScores", "edge_scores", "null_auc_se", "retrain_seeds",
           "train_retrains", "verdict_of", "DETERMINISTIC_RATIO"]
