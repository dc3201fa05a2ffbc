"""The audit that proves forgetting — and fails a model that forgot nothing: utility, rank of
deleted items, population and per-edge (shadow-retrain) membership inference, agreement with an
independent retrain beside a control retrain, and parameter distance.

>>> report = graphforget.audit.audit(original, result.model, graph, result.graph,
...                                  result.deleted_edges, shadows=16)   # trains 18 retrains
>>> print(report.summary()); report.forgotten
"""
from .agreement import agreement
from .forgetting import deleted_item_ranks, item_ranks, rank_summary
from .membership import (FEATURES, MembershipResult, edge_features, fit_logistic,
                         membership_inference_auc, predict_logistic)
from .parameters import parameter_distance, procrustes
from .report import AuditReference, AuditReport, audit
from .umia import UMIA, edge_scores, train_retrains
from .utility import affected_test_rows, utility, utility_report

__all__ = ["utility", "utility_report", "affected_test_rows", "deleted_item_ranks", "item_ranks",
           "rank_summary", "edge_features", "fit_logistic", "predict_logistic",
           "membership_inference_auc", "MembershipResult", "FEATURES", "agreement",
           "parameter_distance", "procrustes", "audit", "AuditReport", "AuditReference", "UMIA",
           "edge_scores", "train_retrains"]
