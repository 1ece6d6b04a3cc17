"""Main-side observability: logging, metrics and tracing, one module each."""
