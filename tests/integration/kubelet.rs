//! Integration tests for the kubelet inspector.
