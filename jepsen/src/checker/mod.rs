//! Checkers: each turns a history into a verdict with the anomalies found.

pub mod linear;
pub mod lock;
pub mod register;
pub mod set;
pub mod watch;

use serde::{Deserialize, Serialize};

/// Whether the history satisfies the property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    /// Checked, and nothing wrong found.
    Valid,
    /// At least one anomaly.
    Invalid,
    /// Could not decide (out of budget, or missing final reads).
    Unknown,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// A short name: `not-linearizable`, `lost-write`, `double-grant`...
    pub kind: String,
    /// Which operations, keys and values.
    pub detail: String,
}

/// A checker's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The overall result.
    pub validity: Validity,
    /// Everything found wrong.
    pub anomalies: Vec<Anomaly>,
    /// What could not be decided and why.
    pub unknown: Vec<String>,
    /// How many independent things (keys, elements, locks) were checked.
    pub checked: usize,
}

impl Verdict {
    /// Invalid with any anomaly, else unknown with anything undecided.
    pub fn from_parts(anomalies: Vec<Anomaly>, unknown: Vec<String>, checked: usize) -> Self {
        let validity = if !anomalies.is_empty() {
            Validity::Invalid
        } else if !unknown.is_empty() {
            Validity::Unknown
        } else {
            Validity::Valid
        };
        Self {
            validity,
            anomalies,
            unknown,
            checked,
        }
    }

    /// Combines two checkers' results on the same run.
    pub fn merge(self, other: Verdict) -> Verdict {
        let mut anomalies = self.anomalies;
        anomalies.extend(other.anomalies);
        let mut unknown = self.unknown;
        unknown.extend(other.unknown);
        Verdict::from_parts(anomalies, unknown, self.checked + other.checked)
    }
}
