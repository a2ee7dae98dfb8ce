"""Self-hosted URL-signing gateway: verify the caller, check policy, redirect to a short-lived URL."""
