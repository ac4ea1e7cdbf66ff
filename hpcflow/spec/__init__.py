"""The workflow and site file formats: models, loading, validation, expansion."""
