"""The reference for the HTTP benchmark: a minimal FastAPI endpoint, nothing else.

``GET /score/{row}``: one student's row of a feature matrix held in memory, the booster's
``predict`` and ``pred_contrib`` with one thread, the score and the top five
contributions. No auth, no database, no validation, no audit. A plain ``def`` handler
(LightGBM releases the GIL, so the thread pool runs requests in parallel).

Run by the bench as ``python -m uvicorn bench.minimal_app:app`` with
``BAOXUE_BENCH_MODEL`` (a LightGBM model file) and ``BAOXUE_BENCH_MATRIX`` (a ``.npy``
float64 matrix in the model's feature order) in the environment.
"""

from __future__ import annotations

import os
from typing import Any

import lightgbm as lgb
import numpy as np
from fastapi import FastAPI, HTTPException

booster = lgb.Booster(model_file=os.environ["BAOXUE_BENCH_MODEL"])
matrix = np.load(os.environ["BAOXUE_BENCH_MATRIX"])
names = booster.feature_name()
app = FastAPI()


@app.get("/score/{row}")
def score(row: int) -> dict[str, Any]:
    if not 0 <= row < len(matrix):
        raise HTTPException(404, "no such row")
    x = matrix[row : row + 1]
    margin = float(booster.predict(x, raw_score=True, num_threads=1)[0])
    contrib = np.asarray(booster.predict(x, pred_contrib=True, num_threads=1))[0, :-1]
    top = np.argsort(-contrib)[:5]
    return {
        "risk_score": 1.0 / (1.0 + np.exp(-margin)),
        "reasons": [{"feature": names[j], "contribution": float(contrib[j])} for j in top],
    }
