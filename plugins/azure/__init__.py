"""Azure plugin: for now only the Azure rows of the accelerator catalog (the azure target comes with its own issue)."""
