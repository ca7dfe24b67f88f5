"""The benchmark's jobs (found by autodiscovery of ``<app>.jobs``) and admin URLs."""
