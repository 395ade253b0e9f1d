"""Fitted things and how they explain themselves: baselines, LightGBM, calibration, reasons."""
