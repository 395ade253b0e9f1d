"""Services: plain functions taking a session, a viewer and plain values (no HTTP)."""
