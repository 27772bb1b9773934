"""GCP plugin: for now only the GCP rows of the accelerator catalog (the gcp target comes with its own issue)."""
