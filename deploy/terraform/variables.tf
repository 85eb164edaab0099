variable "namespace" {
  description = "Namespace radvigil runs in (must match the kustomize overlay's namespace)."
  type        = string
  default     = "radvigil"
}

variable "manifests_file" {
  description = "Rendered kustomize output: kubectl kustomize deploy/k8s/overlays/prod > prod.yaml"
  type        = string
}

variable "database_url" {
  description = "SQLAlchemy URL of radvigil's PostgreSQL database (postgresql+psycopg://...)."
  type        = string
  sensitive   = true
}

variable "audit_key" {
  description = "Secret of radvigil's audit-chain HMAC (RADVIGIL_AUDIT_KEY); production refuses to start without it. Pass it as TF_VAR_audit_key or from a secret store, never in a committed file."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.audit_key) >= 32
    error_message = "audit_key must be a random secret of at least 32 characters."
  }
}

variable "mlflow_admin_password" {
  description = "Password of MLflow's basic-auth admin, which radvigil signs in as (MLFLOW_TRACKING_PASSWORD)."
  type        = string
  sensitive   = true
}

variable "mlflow_flask_secret_key" {
  description = "MLflow's Flask secret key (MLFLOW_FLASK_SERVER_SECRET_KEY): signs the basic-auth app's CSRF tokens."
  type        = string
  sensitive   = true
}

variable "mlflow_backend_store_uri" {
  description = "SQLAlchemy URL of MLflow's own PostgreSQL database, as role mlflow (not radvigil's role)."
  type        = string
  sensitive   = true
}

variable "probe_key" {
  description = "A radvigil API key for the readiness probe and Prometheus (least privilege: see docs/deploying.md)."
  type        = string
  sensitive   = true
}

variable "labels" {
  description = "Extra labels for the namespace (e.g. cost centre, data classification)."
  type        = map(string)
  default     = {}
}
