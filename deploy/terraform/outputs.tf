output "namespace" {
  description = "The namespace radvigil was applied to."
  value       = kubernetes_namespace_v1.radvigil.metadata[0].name
}

output "objects" {
  description = "Kubernetes objects applied from the kustomize output (kind/name)."
  value       = sort(keys(kubernetes_manifest.radvigil))
}
