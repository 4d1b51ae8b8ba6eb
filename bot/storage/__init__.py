"""Storage: tables, the audit log, limits shared across replicas, migrations."""
