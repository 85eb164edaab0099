#!/bin/sh
# First start of the Compose PostgreSQL (docker-entrypoint-initdb.d; scripts/deploy_check.py runs
# it the same way): the app role `radvigil` and MLflow's role `mlflow`, neither a superuser, each
# owning its own database. Passwords are read from secret files into psql variables through the
# environment (\getenv), so none appears on a command line or in the server log.
set -eu
RADVIGIL_DB_PASSWORD=$(cat "${RADVIGIL_DB_PASSWORD_FILE:?}")
MLFLOW_DB_PASSWORD=$(cat "${MLFLOW_DB_PASSWORD_FILE:?}")
export RADVIGIL_DB_PASSWORD MLFLOW_DB_PASSWORD
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres <<'SQL'
\getenv radvigil_password RADVIGIL_DB_PASSWORD
\getenv mlflow_password MLFLOW_DB_PASSWORD
SET log_statement = 'none';
CREATE ROLE radvigil LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'radvigil_password';
CREATE ROLE mlflow LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'mlflow_password';
CREATE DATABASE radvigil OWNER radvigil;
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE radvigil FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
SQL
