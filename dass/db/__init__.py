"""The meta-training database: its builder and its on-disk records."""
