"""The live chat: incremental figures, the ingest runtime, the hub and pub/sub for updates."""
