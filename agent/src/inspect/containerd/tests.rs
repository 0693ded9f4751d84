//! Tests for the inspector.
