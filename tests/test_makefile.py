"""The Makefile is the one interface: a misspelt target or value fails loudly, naming what is allowed."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests._image import REPO


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["runn"], "unknown target 'runn'"),
        (["run", "SKIP=scrapping"], "SKIP: unknown stage 'scrapping'; allowed: scraping modelling forecasting upload"),
        (["run", "LOG_LEVEL=LOUD"], "LOG_LEVEL: unknown level 'LOUD'; allowed: DEBUG INFO WARNING ERROR"),
        (["run", "LOG_LEVEL=DEBUG INFO"], "LOG_LEVEL: 'DEBUG INFO' is not one level"),
        (["run", "PROFILE=staging"], "PROFILE: unknown profile 'staging'; allowed: local prod"),
        (["run", "PROFILE=local prod"], "PROFILE: 'local prod' is not one profile; allowed: local prod"),
        (["stages", "BOOTSTRAP=maybe"], "BOOTSTRAP: 'maybe' must be 1 or 0"),
    ],
)
def test_wrong_targets_and_values_fail_before_anything_runs(args, expected):
    result = make(*args)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "storage-links" not in result.stdout  # nothing ran


def test_an_unrelated_variable_in_the_environment_stops_no_other_target_and_levels_take_any_case():
    env = {**os.environ, "LOG_LEVEL": "verbose", "PIPELINE_PROFILE": "production"}
    helped = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert helped.returncode == 0, helped.stderr
    refused = subprocess.run(["make", "-s", "run"], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert "LOG_LEVEL: unknown level 'VERBOSE'" in refused.stderr
    env["LOG_LEVEL"] = "debug"
    refused = subprocess.run(["make", "-s", "run"], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert "PROFILE: unknown profile 'production' (from PIPELINE_PROFILE); allowed: local prod" in refused.stderr
    everything = "SKIP=scraping modelling forecasting upload"
    quiet = make("stages", "LOG_LEVEL=warning", everything, "BOOTSTRAP=0", "PROFILE=local")
    assert quiet.returncode == 0, quiet.stderr
    assert "log level WARNING" in quiet.stderr


def test_help_names_every_documented_target():
    result = make("help")
    assert result.returncode == 0
    for target in ("run", "validate-links", "test", "bench", "image", "deploy-prod"):
        assert f"make {target}" in result.stdout
