"""The file_enrichment integration (arrives with issue 5; the package is reserved here)."""
