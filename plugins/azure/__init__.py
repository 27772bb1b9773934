"""Azure plugin: the platform on Azure Machine Learning, Azure Files and blob storage."""
