"""One training loop for every model, and for retraining, fine-tuning and shard models.

Each mini-batch propagates the whole graph once (sparse CSR products) and takes the loss on a
batch of samples: BPR triples ``(u, i, j)`` with a fresh vectorised negative draw every epoch,
or labelled ``(u, i, y)`` rows with BCE when the graph carries labels. Early stopping watches a
validation metric (never the test split); the best parameters are kept in memory and optionally
written as a checkpoint.

A recipe ends in one of two ways (``TrainConfig.until``):

* ``"early_stop"`` — the early-stopped (or, without ``patience``, last) parameters;
* ``"stationary"`` — then the stationary finish (:func:`~graphforget.train.stationary.stationary_finish`):
  the same objective, full batch with its fixed negatives, minimised to
  ``‖∇L‖ ≤ gtol·‖θ‖`` — the point influence and Newton unlearning assume.

Either way the relative gradient norm of the objective the unlearners differentiate is measured
at the end and recorded in ``model.recipe`` and the checkpoint.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from ..data.graph import InteractionGraph
from ..metrics import auc, ranking_metrics
from ..models import RecModel
from .objective import Objective
from .sampling import sample_negatives
from .stationary import stationarity, stationary_finish

log = logging.getLogger("graphforget.train")
UNTIL = ("early_stop", "stationary")


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run — the *recipe* (stored in checkpoints; a retrain
    with the same recipe and another ``seed`` is what unlearning is compared with).

    ``weight_decay`` is the λ of the L2 term (the LightGCN paper's batch L2); ``loss`` is
    ``"auto"`` (BCE when the graph has labels, else BPR), ``"bpr"`` or ``"bce"``. Early stopping:
    evaluate on validation every ``eval_every`` epochs and stop after ``patience`` evaluations
    without improvement of ``metric`` (the best parameters are restored); ``patience=None``
    trains all ``epochs``. ``until="stationary"`` adds the stationary finish to ``gtol``
    (at most ``finish_max_iter`` L-BFGS iterations). ``negatives`` fixed negatives per positive
    drawn with ``negative_seed`` define the objective (:class:`~graphforget.train.objective.Objective`);
    ``seed`` drives the initialisation, batch order and the per-epoch negatives.
    """

    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adam"
    loss: str = "auto"
    eval_every: int = 1
    patience: Optional[int] = 10
    metric: str = "recall@20"
    ks: tuple = (20,)
    eval_batch_size: int = 1024
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    log_path: Optional[str] = None
    max_seconds: Optional[float] = None
    until: str = "early_stop"
    gtol: float = 1e-5
    finish_max_iter: int = 20000
    negatives: int = 8
    negative_seed: int = 0

    def __post_init__(self) -> None:
        if self.until not in UNTIL:
            raise ValueError(f"until must be one of {UNTIL}, got {self.until!r}")
        if int(self.epochs) < 0 or int(self.batch_size) < 1 or int(self.eval_every) < 1:
            raise ValueError("need epochs >= 0, batch_size >= 1, eval_every >= 1")
        if not self.lr > 0 or not self.weight_decay >= 0 or not self.gtol > 0:
            raise ValueError("need lr > 0, weight_decay >= 0, gtol > 0")
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        self.ks = tuple(int(k) for k in self.ks)
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {self.ks}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ks"] = list(self.ks)
        return d

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "TrainConfig":
        """The config of a recipe dict (unknown keys, e.g. measured figures, are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in {**d, **overrides}.items() if k in names})

    def objective(self, graph: InteractionGraph) -> Objective:
        """The objective this recipe trains (the loss resolved for ``graph``)."""
        return Objective.for_graph(graph, self.loss, weight_decay=self.weight_decay,
                                   negatives=self.negatives, negative_seed=self.negative_seed)


@dataclass
class TrainResult:
    model: RecModel
    history: list = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = float("nan")
    epochs_run: int = 0
    seconds: float = 0.0
    seconds_per_epoch: float = 0.0
    #: ``{"grad_norm", "param_norm", "grad_norm_rel"}`` of the objective at the result
    stationarity: dict = field(default_factory=dict)
    #: what the stationary finish did (``FinishResult.to_dict()``), ``{}`` without one
    finish: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def loss_kind(graph: InteractionGraph, config: TrainConfig) -> str:
    if config.loss != "auto":
        return config.loss
    return "bce" if graph.has_labels else "bpr"


@torch.no_grad()
def evaluate(model: RecModel, graph: InteractionGraph, split: str = "test", ks=(20,),
             batch_size: int = 1024, device=None, users=None) -> dict:
    """Metrics of ``model`` on a split: top-K ranking (training items masked), plus AUC when
    the graph is labelled. For ``split="test"`` validation items are masked too. ``device``:
    where to propagate, by default the model's own (a CUDA model with a CPU adjacency failed)."""
    if device is None:
        device = next(model.parameters()).device
    model.eval()
    out = model.propagate(graph.adj(device, next(model.parameters()).dtype)).float()
    uemb, iemb = model.split(out)
    edges = getattr(graph, f"{split}_edges")
    res: dict = {}
    if graph.has_labels:
        labels = getattr(graph, f"{split}_labels")
        if edges.shape[1]:
            s = model.score(edges[0].to(device), edges[1].to(device), out).cpu()
            res["auc"] = auc(s, labels)
        return res
    mask = graph.train_edges
    if split == "test" and graph.valid_edges.shape[1]:
        mask = torch.cat([mask, graph.valid_edges], 1)
    res.update(ranking_metrics(uemb.cpu(), iemb.cpu(), mask, edges, ks, batch_size, users))
    return res


class Trainer:
    """Train a :class:`~graphforget.models.RecModel` on an :class:`InteractionGraph`."""

    def __init__(self, config: Optional[TrainConfig] = None, **overrides) -> None:
        self.config = config or TrainConfig()
        if overrides:
            self.config = TrainConfig(**{**self.config.to_dict(), **overrides})

    def _optimizer(self, model: RecModel) -> torch.optim.Optimizer:
        name = self.config.optimizer.lower()
        if name == "adam":
            return torch.optim.Adam(model.parameters(), lr=self.config.lr)
        if name == "adamw":
            return torch.optim.AdamW(model.parameters(), lr=self.config.lr, weight_decay=0.0)
        raise ValueError(f"unknown optimizer {self.config.optimizer!r} (adam, adamw)")

    def batch_loss(self, model: RecModel, graph: InteractionGraph, adj, rows: torch.Tensor,
                   negatives: Optional[torch.Tensor], kind: str) -> torch.Tensor:
        """Mean loss of the training rows ``rows`` plus the LightGCN-paper batch L2 term."""
        cfg = self.config
        dev = cfg.device
        u = graph.train_edges[0, rows].to(dev)
        i = graph.train_edges[1, rows].to(dev)
        out = model.propagate(adj)
        if kind == "bpr":
            j = negatives.to(dev)
            data = model.bpr_terms(out, u, i, j).mean()
            reg = model.batch_l2(u, i, j)
        else:
            y = graph.train_labels[rows].to(dev)
            data = model.bce_terms(out, u, i, y).mean()
            reg = model.batch_l2(u, i)
        return data + cfg.weight_decay * (reg / rows.numel() + model.extra_l2())

    # data-parallel hooks (overridden by train.distributed.DistributedTrainer); one process: identity
    def _reduce_loss(self, total: float) -> float:
        return total

    def _any_rank(self, flag: bool) -> bool:
        return flag

    def fit(self, model: RecModel, graph: InteractionGraph) -> TrainResult:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model.to(cfg.device)
        adj = graph.adj(cfg.device, model.embedding.dtype) if model.has_ego else None
        opt = self._optimizer(model)
        kind = loss_kind(graph, cfg)
        has_valid = graph.valid_edges.shape[1] > 0
        metric = "auc" if graph.has_labels else cfg.metric
        name, _, k = metric.partition("@")
        if metric != "auc" and (not k.isdigit() or int(k) not in cfg.ks):
            raise ValueError(f"metric {metric!r} is not computed: evaluation reports "
                             f"<name>@K for K in ks={tuple(cfg.ks)}")
        best_state, best, best_epoch, bad = None, float("-inf"), -1, 0
        history: list = []
        if cfg.log_path:
            Path(cfg.log_path).parent.mkdir(parents=True, exist_ok=True)
        logf = open(cfg.log_path, "a") if cfg.log_path else None
        notes = []
        if cfg.patience is not None and not has_valid and cfg.epochs:
            notes.append(f"no validation edges: early stopping impossible, all {cfg.epochs} epochs "
                         "trained (graph.carve_validation() makes a validation split)")
            log.warning(notes[-1])
        t0 = time.perf_counter()
        train_seconds = 0.0
        epoch = 0
        tty = sys.stderr.isatty()
        bar = tqdm(range(cfg.epochs), desc=f"train {model.name}", disable=not (cfg.progress and tty),
                   leave=False)
        try:
            for epoch in bar:
                te = time.perf_counter()
                model.train()
                perm = torch.randperm(graph.num_train, generator=gen)
                neg = None
                if kind == "bpr":
                    neg = sample_negatives(graph.train_edges[0][perm], graph.train_edges, graph.num_items, gen)
                total = 0.0
                for s in range(0, perm.numel(), cfg.batch_size):
                    rows = perm[s:s + cfg.batch_size]
                    loss = self.batch_loss(model, graph, adj, rows,
                                           None if neg is None else neg[s:s + cfg.batch_size], kind)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * rows.numel()
                total = self._reduce_loss(total)
                train_seconds += time.perf_counter() - te
                rec = {"epoch": epoch + 1, "loss": total / max(1, graph.num_train),
                       "seconds": round(time.perf_counter() - te, 4)}
                if has_valid and (epoch + 1) % cfg.eval_every == 0:
                    m = evaluate(model, graph, "valid", cfg.ks, cfg.eval_batch_size, cfg.device)
                    rec.update({f"valid_{k}": v for k, v in m.items() if k != "users"})
                    score = m.get(metric, float("nan"))
                    if score > best:
                        best, best_epoch, bad = score, epoch + 1, 0
                        best_state = copy.deepcopy(model.state_dict())
                    else:
                        bad += 1
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", **{metric: f"{score:.4f}"})
                history.append(rec)
                if cfg.progress and not tty:
                    log.info("epoch %d/%d  loss %.4f%s  (%.2fs)", epoch + 1, cfg.epochs, rec["loss"],
                             "".join(f"  {k} {v:.4f}" for k, v in rec.items() if k.startswith("valid_")),
                             rec["seconds"])
                if logf:
                    logf.write(json.dumps(rec) + "\n")
                    logf.flush()
                if cfg.patience is not None and has_valid and bad >= cfg.patience:
                    break
                if cfg.max_seconds is not None and self._any_rank(time.perf_counter() - t0 > cfg.max_seconds):
                    break
        finally:
            if logf:
                logf.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        n = len(history)
        if not model.has_ego:  # a head over frozen models: no objective over ego embeddings
            return TrainResult(model=model, history=history, best_epoch=best_epoch if best_state else n,
                               best_metric=best, epochs_run=n, seconds=time.perf_counter() - t0,
                               seconds_per_epoch=train_seconds / max(1, n), notes=notes)
        objective = cfg.objective(graph)
        finish: dict = {}
        if cfg.until == "stationary":
            say = (lambda m: log.info(m)) if cfg.progress else None  # noqa: E731
            fin = stationary_finish(model, graph, objective, cfg.gtol, cfg.finish_max_iter, log=say)
            finish = fin.to_dict()
            if not fin.converged:
                notes.append(f"stationary finish did not reach gtol {cfg.gtol:g}: "
                             f"{fin.grad_norm_rel:.3g} ({fin.note})")
                log.warning(notes[-1])
        stat = stationarity(model, graph, objective)
        model.recipe = {**cfg.to_dict(), "grad_norm_rel": stat["grad_norm_rel"],
                        "best_epoch": best_epoch if best_state else n, "epochs_run": n}
        return TrainResult(model=model, history=history, best_epoch=best_epoch if best_state else n,
                           best_metric=best, epochs_run=n, seconds=time.perf_counter() - t0,
                           seconds_per_epoch=train_seconds / max(1, n), stationarity=stat,
                           finish=finish, notes=notes)


def train(model: RecModel, graph: InteractionGraph, config: Optional[TrainConfig] = None,
          checkpoint: Optional[str] = None, **overrides) -> TrainResult:
    """Train ``model`` on ``graph``; write the best model to ``checkpoint`` if given."""
    from . import distributed

    trainer = Trainer(config, **overrides)
    if distributed.is_distributed():  # a process group (torchrun): data-parallel, rank 0 writes
        trainer = distributed.DistributedTrainer(trainer.config)
    result = trainer.fit(model, graph)
    if checkpoint and distributed.rank() == 0:
        from .checkpoint import save_checkpoint

        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, model.cpu(), graph,
                        extra={"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                               "stationarity": result.stationarity, "finish": result.finish})
    distributed.barrier()  # the other ranks return once the checkpoint is complete
    return result
