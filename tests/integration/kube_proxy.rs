//! Integration tests for the kube_proxy inspector.
