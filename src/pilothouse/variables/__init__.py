"""Environment variables: encrypted at rest, versioned, masked, validated, injected at deploy."""
