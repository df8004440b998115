//! Targets per module from Prometheus configurations and file_sd files (filled in below).
