//! Trigger sources.
