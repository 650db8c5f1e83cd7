"""forecasting: stage 3 of the pipeline.

Reads modelling's predictions, publishes per series the best candidate or a combination of
candidates (whichever scores better on modelling's backtest folds), writes tables and a
self-contained HTML report under data/output/<run_id>/, and uploads a run to Azure Blob Storage.

Where things happen:
  _inputs.py   reading and checking predictions/ (LATEST, run.json, the Parquet files)
  _combine.py  the pure scoring and combination functions (public below; the benchmark uses them)
  _select.py   per series: score candidates, choose, build the published tables
  _report.py   report.html and its charts
  _publish.py  `run`: the write order that keeps LATEST on a complete run, pruning
  _upload.py   `upload`: Blob Storage, MD5 idempotence, the _SUCCESS marker
  _config.py   every config key and environment variable
  _errors.py   the exception tree and exit codes
"""

from forecasting._combine import Choice, choose, combine, evaluate, inverse_score_weights, mase_scale
from forecasting._config import load_settings
from forecasting._errors import ConfigError, CredentialsError, ForecastingError, InputError, UploadError

__all__ = [
    "Choice",
    "ConfigError",
    "CredentialsError",
    "ForecastingError",
    "InputError",
    "UploadError",
    "choose",
    "combine",
    "evaluate",
    "inverse_score_weights",
    "load_settings",
    "mase_scale",
]
