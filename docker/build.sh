#!/usr/bin/env bash
# make image: build the container image locally (needs a Docker engine).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "image: no Docker engine is reachable ('docker info' failed); start one, or use DRY_RUN=1 make deploy-prod to validate" >&2
  exit 1
fi
exec docker build -f docker/Dockerfile -t "financial-forecasting:${IMAGE_TAG:-latest}" .
