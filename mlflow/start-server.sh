#!/usr/bin/env bash
# Start the MLflow tracking server (UI + REST API + proxied artifact access) for citeops.
#
# `citeops up` runs this script with the variables below taken from the settings of the
# active profile; it can also be run by hand (see mlflow/README.md). Everything comes
# from the environment so that no secret ever appears on a command line:
#
#   MLFLOW_BACKEND_STORE_URI      runs and registry: sqlite:///... (embedded) or
#                                 postgresql+psycopg://user@host:5432/mlflow (production;
#                                 the password, if any, in PGPASSWORD)
#   MLFLOW_ARTIFACTS_DESTINATION  where the server stores artifacts: file:///... or
#                                 s3://bucket/prefix (boto3; credentials from AWS_*,
#                                 endpoint from MLFLOW_S3_ENDPOINT_URL for non-AWS S3)
#   MLFLOW_SERVER_HOST            interface to bind (default 127.0.0.1)
#   MLFLOW_SERVER_PORT            port (default 5000)
#   MLFLOW_SERVER_WORKERS         uvicorn workers (default 2)
#   MLFLOW_DB_UPGRADE             1 (default): run `mlflow db upgrade` first; 0: skip
#   MLFLOW_BIN                    the mlflow executable (default: `mlflow` on PATH)
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION  false (default here): no background job runner
#                                 (seven huey consumers for MLflow's GenAI jobs, which
#                                 citeops does not use); true to turn it back on
#
# Clients talk only to the server: artifacts go through it (`--serve-artifacts`, the
# default root `mlflow-artifacts:/`), so clients need no S3 credentials.
set -euo pipefail

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (sqlite:///... or postgresql+psycopg://...)}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (file:///... or s3://bucket/prefix)}"
host="${MLFLOW_SERVER_HOST:-127.0.0.1}"
port="${MLFLOW_SERVER_PORT:-5000}"
workers="${MLFLOW_SERVER_WORKERS:-2}"
mlflow_bin="${MLFLOW_BIN:-mlflow}"
export MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACTS_DESTINATION
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

# The URI is never echoed: it may carry credentials.
case "$MLFLOW_BACKEND_STORE_URI" in
  sqlite:*|postgresql*|mysql*|mssql*)
    if [ "${MLFLOW_DB_UPGRADE:-1}" = "1" ]; then
      echo "start-server: upgrading the backend store schema (mlflow db upgrade)"
      # `mlflow db upgrade` takes the URI only as an argument, so it shows in the process
      # list for the seconds the upgrade takes: keep passwords in PGPASSWORD, not the URI.
      "$mlflow_bin" db upgrade "$MLFLOW_BACKEND_STORE_URI"
    fi
    ;;
esac

case "$MLFLOW_ARTIFACTS_DESTINATION" in
  file://*) mkdir -p "${MLFLOW_ARTIFACTS_DESTINATION#file://}" ;;
esac

echo "start-server: serving on http://${host}:${port} (workers: ${workers})"
exec "$mlflow_bin" server \
  --host "$host" \
  --port "$port" \
  --workers "$workers" \
  --serve-artifacts \
  --default-artifact-root mlflow-artifacts:/
