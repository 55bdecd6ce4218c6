"""tweetchat: a live dashboard for hashtag tweetchats."""

__version__ = "0.1.0"
