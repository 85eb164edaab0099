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

variable "probe_key" {
  description = "A radvigil API key with role auditor, used by the readiness probe and Prometheus."
  type        = string
  sensitive   = true
}

variable "labels" {
  description = "Extra labels for the namespace (e.g. cost centre, data classification)."
  type        = map(string)
  default     = {}
}
