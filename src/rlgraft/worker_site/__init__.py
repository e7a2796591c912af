"""A folder put first on PYTHONPATH of the Ray workers an rlgraft run starts: see `sitecustomize`."""
