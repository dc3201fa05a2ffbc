"""One training loop for every model, and for retraining, fine-tuning and shard models.

Each mini-batch propagates the whole graph once (sparse CSR products) and takes the loss on a
batch of samples: BPR triples ``(u, i, j)`` with a fresh vectorised negative draw every epoch,
or labelled ``(u, i, y)`` rows with BCE when the graph carries labels. Early stopping watches a
validation metric (never the test split); the best parameters are kept in memory and optionally
written as a checkpoint.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from ..data.graph import InteractionGraph
from ..metrics import auc, ranking_metrics
from ..models import RecModel
from .sampling import sample_negatives


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (stored in checkpoints and reports).

    ``weight_decay`` is the λ of the batch L2 term (LightGCN paper's ``1e-4``); ``loss`` is
    ``"auto"`` (BCE when the graph has labels, else BPR), ``"bpr"`` or ``"bce"``. Early stopping:
    evaluate on validation every ``eval_every`` epochs and stop after ``patience`` evaluations
    without improvement of ``metric``; ``patience=None`` trains all ``epochs``.
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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ks"] = list(self.ks)
        return d


@dataclass
class TrainResult:
    model: RecModel
    history: list = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = float("nan")
    epochs_run: int = 0
    seconds: float = 0.0
    seconds_per_epoch: float = 0.0


def loss_kind(graph: InteractionGraph, config: TrainConfig) -> str:
    if config.loss != "auto":
        return config.loss
    return "bce" if graph.has_labels else "bpr"


@torch.no_grad()
def evaluate(model: RecModel, graph: InteractionGraph, split: str = "test", ks=(20,),
             batch_size: int = 1024, device: str = "cpu", users=None) -> dict:
    """Metrics of ``model`` on a split: top-K ranking (training items masked), plus AUC when
    the graph is labelled. For ``split="test"`` validation items are masked too."""
    model.eval()
    out = model.propagate(graph.adj(device)).float()
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

    def fit(self, model: RecModel, graph: InteractionGraph) -> TrainResult:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model.to(cfg.device)
        adj = graph.adj(cfg.device)
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
        log = open(cfg.log_path, "a") if cfg.log_path else None
        t0 = time.perf_counter()
        train_seconds = 0.0
        epoch = 0
        bar = tqdm(range(cfg.epochs), desc=f"train {model.name}", disable=not cfg.progress,
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
                if log:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                if cfg.patience is not None and has_valid and bad >= cfg.patience:
                    break
                if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                    break
        finally:
            if log:
                log.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        n = len(history)
        return TrainResult(model=model, history=history, best_epoch=best_epoch if best_state else n,
                           best_metric=best, epochs_run=n, seconds=time.perf_counter() - t0,
                           seconds_per_epoch=train_seconds / max(1, n))


def train(model: RecModel, graph: InteractionGraph, config: Optional[TrainConfig] = None,
          checkpoint: Optional[str] = None, **overrides) -> TrainResult:
    """Train ``model`` on ``graph``; write the best model to ``checkpoint`` if given."""
    trainer = Trainer(config, **overrides)
    result = trainer.fit(model, graph)
    if checkpoint:
        from .checkpoint import save_checkpoint

        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, model.cpu(), graph, trainer.config.to_dict(),
                        {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run})
    return result
