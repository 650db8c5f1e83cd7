"""The columns and types of predictions/' Parquet files, which forecasting reads: the run writes
them in this shape, and a checkpoint holds one series' share of the first three."""

SCHEMA = {
    "forecasts": {"series": str, "model": str, "step": "int64", "date": "datetime64[ns]", "mean": float,
                  "lo80": float, "hi80": float, "lo95": float, "hi95": float},
    "backtests": {"series": str, "model": str, "fold": "int64", "step": "int64", "date": "datetime64[ns]",
                  "actual": float, "mean": float, "lo80": float, "hi80": float, "lo95": float, "hi95": float},
    "scores": {"series": str, "model": str, "mase": float, "smape": float, "coverage80": float,
               "coverage95": float, "folds": "int64"},
    "history": {"series": str, "date": "datetime64[ns]", "value": float},
}  # fmt: skip
