#!/bin/bash
# Container entrypoint: link the data directories onto the share, then run the pipeline.
# Options as documented below; any other command is run as given after the links are
# set up (so `ls -la forecasting/` works for troubleshooting, even when init failed).
set -euo pipefail

app_root="${PIPELINE_ROOT:-/app}"

usage() {
  cat <<'USAGE'
Usage: entrypoint [OPTIONS]
       entrypoint COMMAND [ARGS...]

Links the data directories onto the file share (storage-links init), then runs
scraping -> modelling -> forecasting -> upload.

Options:
  --help               show this help and exit
  --log-level LEVEL    DEBUG, INFO, WARNING or ERROR (default INFO)
  --skip-scraping      do not run the scraping stage
  --skip-modeling      do not run the modelling stage
  --skip-forecasting   do not run the forecasting stage
  --skip-upload        do not upload to Azure Blob Storage
With all four --skip options it only initialises and verifies the links.

Any other COMMAND (e.g. `ls -la forecasting/`) is run as given after the links are set up.
Environment: FILESHARE_ROOT (share, default /mnt/fileshare), PIPELINE_PROFILE (local|prod),
FRED_API_KEY, AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY,
SCRAPING_CONFIG / MODELLING_CONFIG / FORECASTING_CONFIG (a stage's settings file on the share).
USAGE
}

init_links() {
  local flags=() child status
  [ "${STORAGE_LINKS_REQUIRE_MOUNT:-0}" = 1 ] && flags+=(--require-mount)
  # Run and waited for, so that a stop (docker stop's SIGTERM, passed on by tini) that arrives
  # during a migration reaches storage-links, which stops between safe steps and releases the
  # share's lock. Left to its default, SIGTERM would end this shell and, with it, the container,
  # killing init while it held the lock. (A background job ignores SIGINT: TERM for both.)
  storage-links init "${flags[@]}" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null' TERM INT
  while :; do
    status=0
    wait "$child" || status=$?
    # wait also returns when a trapped signal arrives; only the child's end is the answer.
    kill -0 "$child" 2>/dev/null || break
  done
  trap - TERM INT
  return "$status"
}

if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
  # The command's own output stays clean on stdout: the link report goes to stderr.
  status=0
  init_links >&2 || status=$?
  # Stopped (docker stop's SIGTERM, Ctrl-C) during init: stop, as asked, rather than start the command.
  case "$status" in 130 | 143) exit "$status" ;; esac
  [ "$status" -eq 0 ] || echo "entrypoint: storage-links init failed; running '$1' anyway for troubleshooting" >&2
  exec "$@"
fi

log_level=INFO
declare -A skip=()
while [ $# -gt 0 ]; do
  case "$1" in
    --help | -h) usage; exit 0 ;;
    --log-level)
      [ $# -ge 2 ] || { echo "entrypoint: --log-level needs a value (DEBUG, INFO, WARNING, ERROR)" >&2; exit 2; }
      log_level="$2"; shift ;;
    --log-level=*) log_level="${1#*=}" ;;
    --skip-scraping) skip[scraping]=1 ;;
    --skip-modeling | --skip-modelling) skip[modelling]=1 ;;
    --skip-forecasting) skip[forecasting]=1 ;;
    --skip-upload) skip[upload]=1 ;;
    *) echo "entrypoint: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "${log_level^^}" in
  DEBUG | INFO | WARNING | ERROR) log_level="${log_level^^}" ;;
  *) echo "entrypoint: --log-level: unknown level '$log_level'; allowed: DEBUG INFO WARNING ERROR" >&2; exit 2 ;;
esac
# Checked before init, which may move data onto the share, rather than by make once it has.
case "${PIPELINE_PROFILE:-local}" in
  local | prod) ;;
  *) echo "entrypoint: PIPELINE_PROFILE: unknown profile '$PIPELINE_PROFILE'; allowed: local prod" >&2; exit 2 ;;
esac

init_links
# With every stage skipped there is nothing left to do: do not pay for starting make.
[ "${#skip[@]}" -eq 4 ] && exit 0
skipped=()
for stage in scraping modelling forecasting upload; do
  [ -n "${skip[$stage]:-}" ] && skipped+=("$stage")
done
exec make -C "$app_root" stages LOG_LEVEL="$log_level" SKIP="${skipped[*]}"
