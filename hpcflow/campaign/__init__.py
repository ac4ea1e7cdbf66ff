"""Storm campaigns: batches of events fed to a workflow, tick by tick."""
