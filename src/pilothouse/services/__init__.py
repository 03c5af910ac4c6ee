"""Services: deployable units inside an environment."""
