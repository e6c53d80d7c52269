"""Rollout: the state store (live versions and their history), shadow and canary rehearsals, gates."""
