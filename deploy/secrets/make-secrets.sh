#!/bin/sh
# Random secrets for the Compose stack, one file each in this folder (git-ignored), mounted into
# the containers at /run/secrets/<name>. Keeps existing files; delete one to make it anew. The
# folder is closed to other host users (0700); the files are readable inside the containers,
# whose users differ (radvigil 10001, postgres 70, grafana 472, prometheus 65534).
# scrape_key is left for you: `docker compose run --rm api-1 keys create --name prometheus
# --role metrics`, then write the key it prints into secrets/scrape_key.
set -eu
cd "$(dirname "$0")"
chmod 0700 .
umask 0022
random() { openssl rand -hex 32; }
keep() { [ -s "$1" ] || { printf '%s' "$2" > "$1"; chmod 0444 "$1"; }; }
keep postgres_password "$(random)"
keep radvigil_db_password "$(random)"
keep mlflow_db_password "$(random)"
keep mlflow_admin_password "$(random)"
keep mlflow_flask_secret_key "$(random)"
keep audit_key "$(random)"
keep grafana_admin_password "$(random)"
keep database_url "postgresql+psycopg://radvigil:$(cat radvigil_db_password)@${POSTGRES_HOST:-postgres}:${POSTGRES_PORT:-5432}/radvigil"
keep mlflow_backend_store_uri "postgresql+psycopg://mlflow:$(cat mlflow_db_password)@${POSTGRES_HOST:-postgres}:${POSTGRES_PORT:-5432}/mlflow"
[ -e scrape_key ] || : > scrape_key
