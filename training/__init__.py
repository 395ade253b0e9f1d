"""The researchers' loop: labels, temporal splits, fit, evaluate, fairness, MLflow."""
