"""Alerts: notification channels (webhook, Slack-compatible webhook, email) and delivery."""
