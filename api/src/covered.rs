//! What a list of executions or a published event answered for, on a
//! journal several servers share: the partitions the answering engine
//! drove all the while it answered, in a header of the answer, so the
//! front ([`crate::front`]) that merges the answers of every server knows
//! whether they cover every partition.
//!
//! Owns that header. It must never decide where a request goes.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use retrace_engine::runtime::Engine;

/// The header: the partitions, comma-separated.
pub const COVERED: &str = "retrace-partitions";

/// The partitions an engine drives as it begins an answer (see
/// [`COVERED`]); `None` when it does not share its journal.
#[derive(Debug)]
pub struct Covered(Option<BTreeSet<u32>>);

impl Covered {
    pub fn begin(engine: &Engine) -> Covered {
        Covered(engine.partitions().map(|p| p.borrow().clone()))
    }

    /// The [`COVERED`] header: what was driven at the beginning and still
    /// is (none when not sharing).
    pub fn end(self, engine: &Engine) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let (Some(before), Some(now)) = (self.0, engine.partitions()) {
            let now = now.borrow().clone();
            let both: Vec<String> = before.intersection(&now).map(u32::to_string).collect();
            if let Ok(value) = HeaderValue::from_str(&both.join(",")) {
                headers.insert(HeaderName::from_static(COVERED), value);
            }
        }
        headers
    }
}

/// The partitions an answer says it covered.
pub fn covered(headers: &HeaderMap) -> impl Iterator<Item = u32> + '_ {
    headers
        .get(COVERED)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()))
}
