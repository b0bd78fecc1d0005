"""``montage serve``: the web UI over the same SQLite job store the CLI writes."""
