"""Inbound deploy webhooks: a signed push (GitHub or generic) registers an artifact and deploys."""
