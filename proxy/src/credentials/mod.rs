//! Secrets sluice handles: the virtual keys apps present (`keys`) and the org provider keys kept
//! sealed in the configuration (`crypto`).

pub mod crypto;
pub mod keys;
