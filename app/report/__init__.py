"""The report of a chat and of a series, as one self-contained HTML page (issue 5)."""
