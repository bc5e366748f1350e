"""Evidently's drift decisions on raw samples, for ``bench.alerts_bench``.

Run with the Python of a virtualenv that has Evidently (``.venv-evidently``:
Evidently 0.7 does not import with pandas 3, which tablewatch's own venv has):

    .venv-evidently/bin/python bench/evidently_side.py SAMPLES.npz [NUM_STATTEST CAT_STATTEST]

SAMPLES.npz holds ``x_ref``, ``x_cur`` (numbers) and ``c_ref``, ``c_cur``
(categories). Prints JSON: per column the test Evidently's ``DataDriftPreset``
chose, its score and verdict, and the seconds the report took.
"""

from __future__ import annotations

import json
import sys
import time


def main(path: str, num_stattest: str | None = None, cat_stattest: str | None = None) -> None:
    import numpy as np
    import pandas as pd
    from evidently.legacy.metric_preset import DataDriftPreset
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    samples = np.load(path)
    reference = pd.DataFrame({"x": samples["x_ref"], "c": samples["c_ref"].astype(str)})
    current = pd.DataFrame({"x": samples["x_cur"], "c": samples["c_cur"].astype(str)})
    mapping = ColumnMapping(numerical_features=["x"], categorical_features=["c"])
    start = time.perf_counter()
    report = Report(metrics=[DataDriftPreset(num_stattest=num_stattest, cat_stattest=cat_stattest)])
    report.run(reference_data=reference, current_data=current, column_mapping=mapping)
    result = report.as_dict()
    seconds = time.perf_counter() - start
    columns = {}
    for metric in result["metrics"]:
        for name, column in metric["result"].get("drift_by_columns", {}).items():
            columns[name] = {"stattest": column["stattest_name"], "score": float(column["drift_score"]),
                             "threshold": column["stattest_threshold"], "drifted": bool(column["drift_detected"])}
    print(json.dumps({"columns": columns, "seconds": seconds}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
