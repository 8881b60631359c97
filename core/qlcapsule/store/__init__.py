"""The version store: capsule versions as git commits (versions), its repository (repo), commits that read only
what changed (commit, disk, statcache, gitpack) and diff/checkout/merge/update (merge)."""
