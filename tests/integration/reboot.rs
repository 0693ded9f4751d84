//! Integration tests for the reboot inspector.
