#!/usr/bin/env bash
# Installs the real services the tests run against, when they are missing:
#   samba + smbnetfs  a network file system on loopback, mounted through FUSE (the share)
# Each is optional for the tests: where it cannot be installed the tests that need it
# are skipped with a visible reason, so this script warns instead of failing.
set -uo pipefail

apt_packages=()
command -v smbd >/dev/null 2>&1 || apt_packages+=(samba)
command -v smbnetfs >/dev/null 2>&1 || apt_packages+=(smbnetfs)
command -v fusermount >/dev/null 2>&1 || command -v fusermount3 >/dev/null 2>&1 || apt_packages+=(fuse3)

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
exit 0
