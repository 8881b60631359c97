"""Signing and verifying capsules: keys, trust, policy, capsule.sig (signatures) and the DSSE envelope (envelope)."""
