"""A model server (FastAPI) watched by tablewatch: the middleware records every
request's latency (``serve.latency_s``, tagged with the service, the route
template, the method and the status class) and ``log_prediction`` keeps
per-hour distribution sketches of each feature and of the prediction, from
which the drift of any window is computed later.

    TABLEWATCH_STORE=sqlite:///tmp/serving.db uvicorn server:app --port 8000
"""

from __future__ import annotations

import math
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import tablewatch
from tablewatch.collectors.asgi import TablewatchMiddleware

collector = tablewatch.Collector()  # the store: $TABLEWATCH_STORE, else ./tablewatch.db
MODELS = {"ranker"}


class Features(BaseModel):
    age: float
    income: float
    country: str


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    collector.close()  # writes what is buffered, the open sketch windows included


app = FastAPI(lifespan=lifespan)
app.add_middleware(TablewatchMiddleware, collector=collector, service="ranker")


@app.post("/predict/{model}")
def predict(model: str, features: Features) -> dict[str, float]:
    if model not in MODELS:
        raise HTTPException(status_code=404, detail=f"no model {model!r}")
    score = 1.0 / (1.0 + math.exp(-(features.age - 40.0) / 8.0 - (features.income - 42_000.0) / 60_000.0))
    collector.log_prediction(model, features.model_dump(), score)
    return {"score": score}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
