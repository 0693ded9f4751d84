//! Integration tests for the containerd inspector.
