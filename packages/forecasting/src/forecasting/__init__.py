"""forecasting: stage 3 of the pipeline.

Reads modelling's predictions, publishes per series the best candidate or a combination of
candidates (whichever scores better on modelling's backtest folds), writes tables and a
self-contained HTML report under data/output/<run_id>/, and uploads a run to Azure Blob Storage.

Where things happen:
  _inputs.py   reading and checking predictions/ (LATEST, run.json, the Parquet files)
  _combine.py  the pure scoring and combination functions (public below; the benchmark uses them)
  _calibrate.py  rescaling the published intervals to their backtest coverage, per frequency (public too)
  _select.py   per series: score candidates, choose, build the published tables
  _report.py   report.html and its charts
  _publish.py  `run`: the write order that keeps LATEST on a complete run, pruning
  _upload.py   `upload`: what is sent (credentials policy, the run's files, the _SUCCESS marker)
  _blob.py     how: azure-storage-blob, MD5 idempotence, retries, one-line errors
  _config.py   every config key and environment variable
  _errors.py   the exception tree and exit codes
"""

from __future__ import annotations

from storage_links import lazy_exports

# Names are imported on first use (PEP 562): `forecasting run` with nothing new and `upload`
# without credentials must not pay for importing pandas, matplotlib or azure-storage-blob.
_SOURCES = {
    "Calibration": "_calibrate",
    "calibrate": "_calibrate",
    "rescale": "_calibrate",
    "Choice": "_combine",
    "choose": "_combine",
    "combine": "_combine",
    "evaluate": "_combine",
    "inverse_score_weights": "_combine",
    "mase_scale": "_combine",
    "load_settings": "_config",
    "ConfigError": "_errors",
    "CredentialsError": "_errors",
    "ForecastingError": "_errors",
    "InputError": "_errors",
    "StorageError": "_errors",
    "UploadError": "_errors",
}

__all__ = sorted(_SOURCES)

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
