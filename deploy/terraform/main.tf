# radvigil on any Kubernetes cluster: the namespace, the Secret the manifests reference, and the
# rendered kustomize output. Cloud-neutral on purpose: a hospital's platform team already runs a
# cluster, PostgreSQL and object storage in their own way (on-premises or in one cloud), so this
# module takes their database URL as an input instead of creating a managed database.

locals {
  documents = [
    for doc in split("\n---\n", file(var.manifests_file)) : yamldecode(doc)
    if trimspace(doc) != ""
  ]
  # Keyed by kind/name so a plan shows which object changes.
  manifests = { for doc in local.documents : "${doc.kind}/${doc.metadata.name}" => doc }
}

resource "kubernetes_namespace_v1" "radvigil" {
  metadata {
    name = var.namespace
    labels = merge(var.labels, {
      "app.kubernetes.io/part-of"          = "radvigil"
      "pod-security.kubernetes.io/enforce" = "restricted"
    })
  }
}

resource "kubernetes_secret_v1" "radvigil" {
  metadata {
    name      = "radvigil-secrets"
    namespace = kubernetes_namespace_v1.radvigil.metadata[0].name
  }
  data = {
    "database-url"    = var.database_url
    "probe-key"       = var.probe_key
    "audit-key"       = var.audit_key
    "mlflow-password" = var.mlflow_admin_password
  }
}

# MLflow's own secrets: its store (role `mlflow`, its own database) and its admin's password.
resource "kubernetes_secret_v1" "mlflow" {
  metadata {
    name      = "radvigil-mlflow"
    namespace = kubernetes_namespace_v1.radvigil.metadata[0].name
  }
  data = {
    "backend-store-uri" = var.mlflow_backend_store_uri
    "admin-password"    = var.mlflow_admin_password
    "flask-secret-key"  = var.mlflow_flask_secret_key
  }
}

resource "kubernetes_manifest" "radvigil" {
  for_each   = local.manifests
  manifest   = each.value
  depends_on = [kubernetes_secret_v1.radvigil, kubernetes_secret_v1.mlflow]
}
