"""The onprem target: a Kubernetes cluster (GPU pools, NFS storage, a registry and weighted serving)."""
