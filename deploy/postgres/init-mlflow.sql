-- First start of the Compose PostgreSQL: MLflow's tracking/registry store beside radvigil's DB.
CREATE DATABASE mlflow OWNER radvigil;
