"""Live sources: each turns a network's API (or an archive, for replay) into batches of parsed
posts for the ingest pipeline, and reports its state for the panel."""
