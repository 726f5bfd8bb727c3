"""Design from explanations: periodic unit cells, topology optimization."""
