"""Certificates and domains (seed 003 SSL Certificate, Domain Registry)."""
