//! Integration tests for the sysctl inspector.
