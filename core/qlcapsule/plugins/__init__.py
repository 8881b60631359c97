"""What a plugin implements (components, hookspecs), exchanges (records, findings), and the manager that loads
and dispatches plugins (manager)."""
