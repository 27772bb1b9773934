"""GCP plugin: the platform on Vertex AI, Filestore, Artifact Registry and Cloud Storage."""
