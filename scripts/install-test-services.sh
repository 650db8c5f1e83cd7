#!/usr/bin/env bash
# Installs the real services the tests run against, when they are missing:
#   samba + smbnetfs  a network file system on loopback, mounted through FUSE (the share)
#   chromium          a real headless browser that opens the forecasting report
#   tini              the container's PID 1, for the test that stops a running container
#   azurite           the Azure Storage emulator (npm), installed into .cache/node/, not globally
# Each is optional for the tests: where it cannot be installed the tests that need it
# are skipped with a visible reason, so this script warns instead of failing.
set -uo pipefail

apt_packages=()
command -v smbd >/dev/null 2>&1 || apt_packages+=(samba)
command -v smbnetfs >/dev/null 2>&1 || apt_packages+=(smbnetfs)
command -v fusermount >/dev/null 2>&1 || command -v fusermount3 >/dev/null 2>&1 || apt_packages+=(fuse3)
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
command -v tini >/dev/null 2>&1 || apt_packages+=(tini)

if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test services: installing ${apt_packages[*]}" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"; } \
      >/tmp/install-test-services.log 2>&1 \
      || echo "test services: could not install ${apt_packages[*]} (see /tmp/install-test-services.log); their tests will be skipped" >&2
  else
    echo "test services: ${apt_packages[*]} missing and not root; their tests will be skipped" >&2
  fi
fi

# Azurite (blob service for the upload tests): a project-local npm install, so nothing global changes.
# The tests look for .cache/node/node_modules/.bin/azurite-blob (or AZURITE_BLOB_BIN).
azurite_prefix="$(cd "$(dirname "$0")/.." && pwd)/.cache/node"
if [ ! -x "$azurite_prefix/node_modules/.bin/azurite-blob" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "test services: installing azurite into $azurite_prefix" >&2
    { mkdir -p "$azurite_prefix" && npm install --prefix "$azurite_prefix" --no-audit --no-fund --loglevel=error azurite@3; } \
      >>/tmp/install-test-services.log 2>&1 \
      || echo "test services: could not install azurite (see /tmp/install-test-services.log); the upload tests will be skipped" >&2
  else
    echo "test services: npm missing, azurite not installed; the upload tests will be skipped" >&2
  fi
fi
exit 0
