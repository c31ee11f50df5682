//! Delivery tests.
