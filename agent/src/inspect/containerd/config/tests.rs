//! Tests for config loading.
