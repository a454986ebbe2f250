#!/bin/sh
# Container entry point (also usable on any host): migrate the store, then serve.
#
#   entrypoint.sh serve [extra `tollway serve` options]   (the image's default command)
#   entrypoint.sh <any command>                           (e.g. tollway apply -f tollway.yaml)
#
# Settings come from TOLLWAY_* variables: TOLLWAY_DATABASE_URL, TOLLWAY_HOST, TOLLWAY_PORT,
# TOLLWAY_WORKERS (worker processes), TOLLWAY_TRUSTED_PROXIES (only these peers' X-Forwarded-*
# headers are believed; empty trusts nobody), TOLLWAY_MIGRATE=false to skip the migration step
# (when a separate one-shot job runs `tollway migrate`, as compose.yaml does).
set -eu

if [ "${1:-serve}" != "serve" ]; then
  exec "$@"
fi
[ "$#" -gt 0 ] && shift

if [ "${TOLLWAY_MIGRATE:-true}" != "false" ]; then
  tollway migrate
fi
# exec: tollway becomes this process, so the container's SIGTERM reaches it directly and
# in-flight requests finish before it exits.
exec tollway serve \
  --host "${TOLLWAY_HOST:-0.0.0.0}" \
  --port "${TOLLWAY_PORT:-8000}" \
  --workers "${TOLLWAY_WORKERS:-1}" \
  "$@"
