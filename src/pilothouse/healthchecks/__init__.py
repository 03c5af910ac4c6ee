"""Health monitoring: probes, derived status, uptime and SLA, alerts (in progress)."""
