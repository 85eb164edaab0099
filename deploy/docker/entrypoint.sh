#!/bin/sh
# Container entry point: MLflow reads its secrets only from the environment, so VAR_FILE (a
# mounted secret file) becomes VAR here for the four it needs; radvigil reads RADVIGIL_*_FILE
# itself (radvigil.config). Then runs the command ("radvigil serve", "mlflow server ...").
set -eu
for var in MLFLOW_TRACKING_PASSWORD MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_BACKEND_STORE_URI \
  MLFLOW_FLASK_SERVER_SECRET_KEY; do
  eval "file=\${${var}_FILE:-}"
  if [ -n "$file" ]; then
    value=$(cat "$file")
    export "$var=$value"
    unset "${var}_FILE"
  fi
done
exec "$@"
