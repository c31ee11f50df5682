//! The usage record on the wire, and the ledger's request and answer bodies: the one definition
//! the proxy (which emits records) and the ledger (which stores them) share.
//!
//! # Versioning
//! Every record carries `v` ([`RECORD_VERSION`]); a record without it is version 1, which is what
//! the proxy wrote before the field existed. Adding an optional field does not change the
//! version: readers ignore fields they do not know, so an older ledger keeps accepting records
//! from a newer proxy. A change that alters the meaning of an existing field bumps the version,
//! and a ledger refuses versions above the one it understands ([`UsageRecord::validate`]) rather
//! than misreading them.
//!
//! The crate depends on serde and uuid only, so the proxy can build records with it on its
//! request path at no extra cost.

mod answers;
pub mod clock;
mod record;
mod review;
mod spelling;

#[cfg(test)]
mod tests;

pub use answers::{
    ErasureAnswer, GroupBy, IngestAnswer, IngestBatch, IngestBatchRef, OrgSpend, Rejection,
    SpendAnswer, UsageAnswer, UsageGroup, UsageTotals,
};
pub use record::{Outcome, RecordError, UsageRecord, RECORD_VERSION};
pub use review::{
    AuditAnswer, AuditEntry, CreatedOrgToken, Flag, FlagKind, FlagMetric, FlagReview, FlagStatus,
    FlagsAnswer, NewOrgToken, OrgToken, OrgTokensAnswer, ReviewAction, SubjectKind, SuspendRequest,
    SuspendTarget, Suspension, SuspensionsAnswer,
};
