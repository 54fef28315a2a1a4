"""The web_api integration (arrives with issue 5; the package is reserved here)."""
