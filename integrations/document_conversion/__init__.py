"""The document_conversion integration (arrives with issue 5; the package is reserved here)."""
