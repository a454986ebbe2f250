"""Use cases shared by the CLI, the admin API and the portal."""
