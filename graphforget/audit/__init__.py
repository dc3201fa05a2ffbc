"""The audit that proves forgetting: utility, rank of deleted items, membership inference,
agreement with retraining beside the retrain-vs-retrain noise floor, and parameter distance.

>>> report = graphforget.audit.audit(original, result.model, graph, result.graph,
...                                  result.deleted_edges, retrained=r1, retrained_alt=r2)
>>> print(report.summary())
"""
from .agreement import agreement, noise_floor, verdict
from .forgetting import deleted_item_ranks, item_ranks, rank_summary
from .membership import (FEATURES, MembershipResult, edge_features, fit_logistic,
                         membership_inference_auc, predict_logistic)
from .parameters import parameter_distance
from .report import AuditReport, audit
from .utility import affected_test_rows, utility, utility_report

__all__ = ["utility", "utility_report", "affected_test_rows", "deleted_item_ranks", "item_ranks",
           "rank_summary", "edge_features", "fit_logistic", "predict_logistic",
           "membership_inference_auc", "MembershipResult", "FEATURES", "agreement", "noise_floor",
           "verdict", "parameter_distance", "audit", "AuditReport"]
