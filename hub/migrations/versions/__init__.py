"""One module per schema revision, oldest first (hub.migrate runs them)."""
