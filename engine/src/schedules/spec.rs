//! A schedule as a user writes it (`ScheduleSpec`, the JSON the API takes
//! and the journal records) and when it fires (`Timing`).
//!
//! Fire times are whole instants in milliseconds since the Unix epoch. A
//! cron schedule fires at every minute its five fields match in its time
//! zone (croner evaluates the expression; chrono-tz knows the zones, so a
//! time that does not exist on a daylight-saving day fires at the first
//! minute after the gap, and a repeated hour fires once). An `everyMs`
//! schedule fires at `anchor + k × everyMs` (k ≥ 1), the anchor being when
//! its timing was last set.
//!
//! Owns checking a spec and computing fire times. It must never read a
//! clock: every function takes the time it reasons about.

use std::str::FromStr;

use chrono::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::machine::PRIORITY_MAX;
use crate::model::{check_name_chars, check_workflow_name};

/// Fire times missed by at most this much are still fired (default).
pub const CATCHUP_WINDOW_MS_DEFAULT: u64 = 60_000;
/// The shortest catch-up window: a fire time is due at its instant, and the
/// loop that fires it needs a moment.
pub const CATCHUP_WINDOW_MS_MIN: u64 = 1_000;
/// The longest catch-up window (a year).
pub const CATCHUP_WINDOW_MS_MAX: u64 = 366 * 24 * 3_600_000;
/// The shortest interval of an `everyMs` schedule.
pub const EVERY_MS_MIN: u64 = 1_000;
/// The longest interval of an `everyMs` schedule (ten years).
pub const EVERY_MS_MAX: u64 = 3_660 * 24 * 3_600_000;
/// The longest schedule id, in bytes.
const ID_LEN_MAX: usize = 128;

/// What a schedule does when a fire time comes while the execution it
/// started last is still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Overlap {
    /// Do not start; the fire time is recorded as skipped.
    #[default]
    Skip,
    /// Keep one fire time, started when the running execution ends; more
    /// fire times meanwhile are skipped.
    BufferOne,
    /// Start anyway.
    Allow,
    /// Cancel the running execution, then start.
    CancelPrevious,
}

impl Overlap {
    pub const ALL: [Overlap; 4] = [
        Overlap::Skip,
        Overlap::BufferOne,
        Overlap::Allow,
        Overlap::CancelPrevious,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "bufferOne",
            Overlap::Allow => "allow",
            Overlap::CancelPrevious => "cancelPrevious",
        }
    }
}

fn default_input() -> Value {
    Value::Object(serde_json::Map::new())
}

fn default_catchup() -> u64 {
    CATCHUP_WINDOW_MS_DEFAULT
}

fn is_default_input(v: &Value) -> bool {
    *v == default_input()
}

/// A schedule as written: which workflow, with which input, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleSpec {
    pub id: String,
    pub workflow: String,
    /// A pinned version; `None`: the newest when each fire starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default = "default_input", skip_serializing_if = "is_default_input")]
    pub input: Value,
    /// Five fields (minute hour day-of-month month day-of-week) or an
    /// alias (`@hourly`, `@daily`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA zone `cron` is read in (`None`: UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default = "default_catchup")]
    pub catchup_window_ms: u64,
    #[serde(default)]
    pub paused: bool,
    /// The started executions' priority (0 to 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

impl ScheduleSpec {
    /// Every problem of the spec on its own (the workflow and its input are
    /// the engine's to check), and its timing when there is none. `now_ms`
    /// is when it is checked: a cron expression that never matches after it
    /// is refused.
    pub fn check(&self, now_ms: u64) -> Result<Timing, Vec<String>> {
        let mut problems = Vec::new();
        if let Err(p) = check_schedule_id(&self.id) {
            problems.push(p);
        }
        if let Err(p) = check_workflow_name(&self.workflow) {
            problems.push(format!("workflow: {p}"));
        }
        if let Some(v) = &self.version
            && let Err(p) = check_name_chars("version", v)
        {
            problems.push(p);
        }
        if self.priority.is_some_and(|p| p > PRIORITY_MAX) {
            problems.push(format!("priority must be 0 to {PRIORITY_MAX}"));
        }
        if !(CATCHUP_WINDOW_MS_MIN..=CATCHUP_WINDOW_MS_MAX).contains(&self.catchup_window_ms) {
            problems.push(format!(
                "catchupWindowMs must be from {CATCHUP_WINDOW_MS_MIN} to {CATCHUP_WINDOW_MS_MAX} \
                 (366 days)"
            ));
        }
        let timing = match Timing::of(self, now_ms) {
            Ok(t) => Some(t),
            Err(p) => {
                problems.extend(p);
                None
            }
        };
        match timing {
            Some(t) if problems.is_empty() => Ok(t),
            _ => Err(problems),
        }
    }
}

/// A schedule id: `nightly-report`, `billing.invoices_1`.
pub fn check_schedule_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("id must not be empty".into());
    }
    if id.len() > ID_LEN_MAX {
        return Err(format!("id is longer than {ID_LEN_MAX} bytes"));
    }
    let mut chars = id.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !starts_well || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(format!(
            "id `{}` is not well-formed: use letters, digits, `_`, `.` and `-`, starting with a \
             letter or digit",
            id.escape_debug()
        ));
    }
    Ok(())
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Timing {
    Cron {
        cron: Box<croner::Cron>,
        zone: chrono_tz::Tz,
    },
    Every(u64),
}

impl Timing {
    /// The timing `spec` asks for: exactly one of `cron` and `everyMs`.
    pub fn of(spec: &ScheduleSpec, now_ms: u64) -> Result<Timing, Vec<String>> {
        match (&spec.cron, spec.every_ms) {
            (Some(_), Some(_)) => Err(vec!["give either cron or everyMs, not both".into()]),
            (None, None) => Err(vec![
                "give cron (with an optional timezone) or everyMs".into(),
            ]),
            (None, Some(every)) => {
                let mut problems = Vec::new();
                if spec.timezone.is_some() {
                    problems.push("timezone applies to cron only".into());
                }
                if !(EVERY_MS_MIN..=EVERY_MS_MAX).contains(&every) {
                    problems.push(format!(
                        "everyMs must be from {EVERY_MS_MIN} to {EVERY_MS_MAX}"
                    ));
                }
                if problems.is_empty() {
                    Ok(Timing::Every(every))
                } else {
                    Err(problems)
                }
            }
            (Some(expr), None) => {
                let mut problems = Vec::new();
                let zone = match spec.timezone.as_deref() {
                    None => Some(chrono_tz::UTC),
                    Some(name) => match chrono_tz::Tz::from_str(name) {
                        Ok(z) => Some(z),
                        Err(_) => {
                            problems.push(format!(
                                "timezone `{}` is not an IANA time zone (e.g. `Europe/Berlin`, \
                                 `America/New_York`, `UTC`)",
                                name.escape_debug()
                            ));
                            None
                        }
                    },
                };
                let cron = parse_cron(expr).map_err(|p| problems.push(p)).ok();
                match (cron, zone) {
                    (Some(cron), Some(zone)) if problems.is_empty() => {
                        let timing = Timing::Cron {
                            cron: Box::new(cron),
                            zone,
                        };
                        if timing.next_after(now_ms, now_ms).is_none() {
                            return Err(vec![format!(
                                "cron `{}` never fires (no date matches it)",
                                expr.escape_debug()
                            )]);
                        }
                        Ok(timing)
                    }
                    _ => Err(problems),
                }
            }
        }
    }

    /// The first fire time strictly after `after_ms`; `anchor_ms` is when
    /// the timing was set (an `everyMs` schedule counts from it). `None`
    /// when there is none (a cron expression that matches no later date).
    pub fn next_after(&self, after_ms: u64, anchor_ms: u64) -> Option<u64> {
        match self {
            Timing::Every(every) => {
                let every = (*every).max(1);
                if after_ms < anchor_ms {
                    return anchor_ms.checked_add(every);
                }
                let k = (after_ms - anchor_ms) / every + 1;
                k.checked_mul(every)?.checked_add(anchor_ms)
            }
            Timing::Cron { cron, zone } => {
                let at = zone
                    .timestamp_millis_opt(i64::try_from(after_ms).ok()?)
                    .single()?;
                let next = cron.find_next_occurrence(&at, false).ok()?;
                u64::try_from(next.timestamp_millis())
                    .ok()
                    .filter(|n| *n > after_ms)
            }
        }
    }

    /// The last fire time strictly before `before_ms` and strictly after
    /// `after_ms`, if any.
    pub fn last_between(&self, after_ms: u64, before_ms: u64, anchor_ms: u64) -> Option<u64> {
        match self {
            Timing::Every(every) => {
                let every = (*every).max(1);
                let first = self.next_after(after_ms, anchor_ms)?;
                if first >= before_ms {
                    return None;
                }
                let k = (before_ms - 1 - first) / every;
                Some(first + k * every)
            }
            Timing::Cron { cron, zone } => {
                // Cron times are whole seconds: below a fraction of one,
                // the second it is in is already before it.
                let whole = before_ms - before_ms % 1_000;
                let at = zone
                    .timestamp_millis_opt(i64::try_from(whole).ok()?)
                    .single()?;
                let last = cron.find_previous_occurrence(&at, whole < before_ms).ok()?;
                u64::try_from(last.timestamp_millis())
                    .ok()
                    .filter(|l| *l > after_ms && *l < before_ms)
            }
        }
    }

    /// The next `n` fire times after `after_ms`.
    pub fn upcoming(&self, after_ms: u64, anchor_ms: u64, n: usize) -> Vec<u64> {
        let mut times = Vec::with_capacity(n);
        let mut at = after_ms;
        while times.len() < n {
            match self.next_after(at, anchor_ms) {
                Some(next) => {
                    times.push(next);
                    at = next;
                }
                None => break,
            }
        }
        times
    }
}

/// A standard cron expression: five fields, or an alias; six- and
/// seven-field forms (seconds, years) are refused.
fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let trimmed = expr.trim();
    let fields = trimmed.split_whitespace().count();
    if !trimmed.starts_with('@') && fields != 5 {
        return Err(format!(
            "cron `{}` has {fields} fields: give five (minute hour day-of-month month \
             day-of-week), e.g. `0 3 * * *`, or an alias such as `@hourly`",
            expr.escape_debug()
        ));
    }
    croner::Cron::from_str(trimmed)
        .map_err(|e| format!("cron `{}` is not valid: {e}", expr.escape_debug()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn spec(extra: Value) -> ScheduleSpec {
        let mut v = json!({"id": "s", "workflow": "w"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    /// 2023-11-14T22:13:20Z
    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn every_fires_at_anchor_plus_multiples() {
        let t = spec(json!({"everyMs": 1_000})).check(NOW).unwrap();
        assert_eq!(t.next_after(NOW, NOW), Some(NOW + 1_000));
        assert_eq!(t.next_after(NOW + 999, NOW), Some(NOW + 1_000));
        assert_eq!(t.next_after(NOW + 1_000, NOW), Some(NOW + 2_000));
        assert_eq!(t.next_after(NOW - 5, NOW), Some(NOW + 1_000));
        assert_eq!(t.last_between(NOW, NOW + 3_500, NOW), Some(NOW + 3_000));
        assert_eq!(t.last_between(NOW, NOW + 3_000, NOW), Some(NOW + 2_000));
        assert_eq!(t.last_between(NOW + 2_000, NOW + 3_000, NOW), None);
        assert_eq!(
            t.upcoming(NOW, NOW, 3),
            vec![NOW + 1_000, NOW + 2_000, NOW + 3_000]
        );
    }

    #[test]
    fn cron_fires_on_the_minute_in_its_zone_across_daylight_saving() {
        let t = spec(json!({"cron": "0 * * * *"})).check(NOW).unwrap();
        // 22:13:20Z → 23:00Z.
        assert_eq!(t.next_after(NOW, NOW), Some(1_700_002_800_000));
        assert_eq!(
            t.next_after(1_700_002_800_000, NOW),
            Some(1_700_006_400_000)
        );
        // 02:30 every day in Berlin; 2024-03-31 has no 02:30, so it fires
        // at 03:00 (01:00Z), then at 02:30 (00:30Z) the day after.
        let t = spec(json!({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}))
            .check(NOW)
            .unwrap();
        let before = 1_711_800_000_000; // 2024-03-30T12:00Z
        assert_eq!(
            t.upcoming(before, before, 3),
            vec![
                1_711_846_800_000, // 2024-03-31T01:00Z (03:00 CEST)
                1_711_931_400_000, // 2024-04-01T00:30Z (02:30 CEST)
                1_712_017_800_000,
            ]
        );
        assert_eq!(
            t.last_between(before, 1_711_931_400_001, before),
            Some(1_711_931_400_000)
        );
    }

    #[test]
    fn every_problem_is_named() {
        let problems = spec(json!({
            "id": "-bad", "workflow": "", "cron": "61 * * * *",
            "timezone": "Mars/Olympus", "priority": 10, "catchupWindowMs": u64::MAX
        }))
        .check(NOW)
        .unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "id `-bad`",
            "workflow name must not be empty",
            "priority must be 0 to 9",
            "catchupWindowMs must be from 1000",
            "`Mars/Olympus` is not an IANA time zone",
            "cron `61 * * * *` is not valid",
        ] {
            assert!(all.contains(expected), "{expected} missing from {all}");
        }
        for (extra, expected) in [
            (
                json!({}),
                "give cron (with an optional timezone) or everyMs",
            ),
            (json!({"cron": "* * * * *", "everyMs": 1000}), "not both"),
            (json!({"everyMs": 999}), "everyMs must be from 1000"),
            (json!({"everyMs": 0}), "everyMs must be from 1000"),
            (
                json!({"everyMs": 5000, "timezone": "UTC"}),
                "timezone applies to cron only",
            ),
            (json!({"cron": "* * * * * *"}), "has 6 fields"),
            (json!({"cron": "0 0 30 2 *"}), "never fires"),
        ] {
            let all = spec(extra.clone()).check(NOW).unwrap_err().join("\n");
            assert!(all.contains(expected), "{extra}: {all}");
        }
    }

    #[test]
    fn a_spec_reads_back_as_written() {
        let s = spec(json!({"cron": "@daily", "overlap": "bufferOne", "input": {"a": 1}}));
        assert_eq!(s.overlap, Overlap::BufferOne);
        assert_eq!(s.catchup_window_ms, CATCHUP_WINDOW_MS_DEFAULT);
        let back: ScheduleSpec = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(
            serde_json::from_value::<ScheduleSpec>(
                json!({"id": "s", "workflow": "w", "evryMs": 5})
            )
            .is_err()
        );
        for o in Overlap::ALL {
            assert_eq!(serde_json::to_value(o).unwrap(), json!(o.as_str()));
        }
    }
}
