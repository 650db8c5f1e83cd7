"""The stage's own steps, apart from the models: the forecast dates."""

import pandas as pd
import pytest
from modelling._run import future_dates


@pytest.mark.parametrize(
    ("last", "frequency", "expected"),
    [
        ("2009-07-01", "Q", ["2009-10-01", "2010-01-01", "2010-04-01"]),  # quarter starts stay quarter starts
        ("2009-06-30", "Q", ["2009-09-30", "2009-12-31", "2010-03-31"]),  # quarter ends stay quarter ends
        ("2020-01-31", "M", ["2020-02-29", "2020-03-31", "2020-04-30"]),
        ("2020-01-15", "M", ["2020-02-15", "2020-03-15", "2020-04-15"]),  # mid-month: the same day
        ("2019-01-01", "A", ["2020-01-01", "2021-01-01", "2022-01-01"]),
        ("2024-03-01", "B", ["2024-03-04", "2024-03-05", "2024-03-06"]),  # a Friday: the weekend skipped
        ("2024-03-01", "W", ["2024-03-08", "2024-03-15", "2024-03-22"]),
        ("2024-02-28", "D", ["2024-02-29", "2024-03-01", "2024-03-02"]),
    ],
)
def test_future_dates_step_on_the_manifest_frequency_anchored_as_the_last_date(last, frequency, expected):
    assert list(future_dates(pd.Timestamp(last), frequency, 3)) == [pd.Timestamp(d) for d in expected]
