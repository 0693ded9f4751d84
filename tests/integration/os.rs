//! Integration tests for the os inspector.
