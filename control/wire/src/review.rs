//! Abuse review on the wire: flags of unusual volume and their review, suspensions (which the
//! spend feed carries to every proxy) and the audit log's entries.

use crate::spelling::{self, spelled};
use serde::{Deserialize, Serialize};

/// What a suspension applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// One virtual key, by its id (`key_…`, as records name it).
    Key,
    /// Every key of an org.
    Org,
}

spelled!(SubjectKind {
    Key => "key",
    Org => "org",
} unknown(s) -> String {
    format!("unknown subject kind {s:?} (known: {})", spelling::known(&SubjectKind::ALL, SubjectKind::as_str))
});

/// A key or org refused by every proxy until an operator lifts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub kind: SubjectKind,
    pub subject: String,
    /// The operator's reason, shown to operators (the caller only learns it is suspended).
    pub reason: String,
    pub since_ms: u64,
}

/// `PUT /v1/suspensions/{kind}/{subject}` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    pub reason: String,
}

/// `GET /v1/suspensions` answer, sorted by kind and subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspensionsAnswer {
    pub suspensions: Vec<Suspension>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: String,
    pub time_ms: u64,
    /// `operator`, or the name of the org-admin token that acted.
    pub actor: String,
    /// `suspension.set`, `suspension.lifted`, `org.export`, `org.erase`, …
    pub action: String,
    pub subject: Option<String>,
    pub detail: Option<String>,
    /// The caller's address as the ledger saw it.
    pub source_ip: Option<String>,
}

/// `GET /v1/audit` answer, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnswer {
    pub entries: Vec<AuditEntry>,
}

/// What an abuse flag is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    Key,
    Org,
    /// A client address, in the form the proxies record it (whole, truncated or hashed).
    Ip,
}

spelled!(FlagKind {
    Key => "key",
    Org => "org",
    Ip => "ip",
} unknown(s) -> String {
    format!("unknown flag kind {s:?} (known: {})", spelling::known(&FlagKind::ALL, FlagKind::as_str))
});

/// The volume a flag measured in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagMetric {
    Requests,
    /// Input plus output tokens.
    Tokens,
}

spelled!(FlagMetric {
    Requests => "requests",
    Tokens => "tokens",
} unknown(s) -> String {
    format!("unknown flag metric {s:?} (known: {})", spelling::known(&FlagMetric::ALL, FlagMetric::as_str))
});

/// Where a flag is in its review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagStatus {
    Open,
    Dismissed,
    /// Reviewed and a key or org suspended for it.
    Suspended,
}

spelled!(FlagStatus {
    Open => "open",
    Dismissed => "dismissed",
    Suspended => "suspended",
} unknown(s) -> String {
    format!("unknown flag status {s:?} (known: {})", spelling::known(&FlagStatus::ALL, FlagStatus::as_str))
});

/// An hour of unusual volume for one subject, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub id: String,
    pub kind: FlagKind,
    pub subject: String,
    /// Start of the UTC hour measured.
    pub hour_ms: u64,
    pub metric: FlagMetric,
    /// The hour's volume (so far, for the current hour).
    pub value: u64,
    /// The subject's baseline: median and median absolute deviation of its active hours in
    /// the trailing week (0 when it has none).
    pub median: f64,
    pub mad: f64,
    /// The bar `value` crossed.
    pub bar: f64,
    /// Crossed an explicit threshold (else the baseline).
    pub by_threshold: bool,
    pub status: FlagStatus,
    pub raised_ms: u64,
    pub reviewed_ms: Option<u64>,
    /// The reviewer's note.
    pub note: Option<String>,
}

/// `GET /v1/flags` answer, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlagsAnswer {
    pub flags: Vec<Flag>,
}

/// `POST /v1/flags/{id}/review` body: dismiss, or suspend the flag's key or org (an IP flag
/// names which key or org to suspend in `suspend`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagReview {
    pub action: ReviewAction,
    pub note: Option<String>,
    pub suspend: Option<SuspendTarget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    Dismiss,
    Suspend,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendTarget {
    pub kind: SubjectKind,
    pub subject: String,
}

/// `POST /v1/org-tokens` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrgToken {
    pub org: String,
    /// Who or what holds it (`alice`, `finance-dashboard`), for the audit log.
    pub name: String,
}

/// An org-admin token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgToken {
    pub id: String,
    pub org: String,
    pub name: String,
    pub created_ms: u64,
    pub revoked_ms: Option<u64>,
}

/// `POST /v1/org-tokens` answer: the token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedOrgToken {
    pub token: String,
    #[serde(flatten)]
    pub info: OrgToken,
}

/// `GET /v1/org-tokens` answer, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgTokensAnswer {
    pub tokens: Vec<OrgToken>,
}
