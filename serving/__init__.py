"""Everything that runs for users: settings, the `baoxue` command line, the service."""
