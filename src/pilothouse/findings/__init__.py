"""Security findings: scans (imported or run), SARIF and native importers, deduplication across
scans, triage and SLAs, per-scan and per-environment summaries, the deployment gate."""
