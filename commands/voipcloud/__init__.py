"""VoIPcloud (phone-system partner portal): balances, moving funds, customer accounts."""
