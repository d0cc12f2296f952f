"""Evaluation: classification metrics, attack success rate, and what each metric name means."""
from ttrlab.evaluation.metrics import METRICS, MetricInfo, attack_success_rate, classification_metrics

__all__ = ["METRICS", "MetricInfo", "attack_success_rate", "classification_metrics"]
