//! What a webhook subscription asks for, and its checks: `url` (where to
//! send), `events` (which event kinds of executions' histories) and
//! `workflow` (only executions of that workflow, when given).
//!
//! Owns the spec's shape and every check made before a subscription is
//! recorded: an `http` or `https` URL with a host and no credentials, whose
//! address, when it is an IP literal, the outbound address policy allows
//! (a name is checked when a delivery connects: its addresses can change);
//! at least one event kind, each one the history knows; a well-formed
//! workflow name. It must never resolve a name or connect.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::http::AddressPolicy;
use crate::machine::Event;
use crate::model::check_workflow_name;

/// The longest URL a subscription may have.
pub const URL_MAX_CHARS: usize = 2_048;

/// A subscription as `POST /v1/webhooks` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where deliveries are posted.
    pub url: String,
    /// The event kinds sent (`execution_completed`, `step_failed`, …),
    /// each once, in the order given.
    pub events: Vec<String>,
    /// Only events of executions of this workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
}

impl WebhookSpec {
    /// Every problem of the spec under `policy`, each naming its field.
    pub fn check(&self, policy: &AddressPolicy) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Err(p) = check_url(&self.url, policy) {
            problems.push(format!("url: {p}"));
        }
        if self.events.is_empty() {
            problems.push("events: name at least one event kind".to_owned());
        }
        let mut seen = BTreeSet::new();
        let unknown: Vec<&str> = self
            .events
            .iter()
            .filter(|kind| !Event::KINDS.contains(&kind.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            problems.push(format!(
                "events: {} {} not an event kind of executions' histories (the kinds: {})",
                unknown
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if unknown.len() == 1 { "is" } else { "are" },
                Event::KINDS.join(", ")
            ));
        }
        for kind in &self.events {
            if !seen.insert(kind.as_str()) {
                problems.push(format!("events: `{kind}` is named twice"));
            }
        }
        if let Some(workflow) = &self.workflow
            && let Err(p) = check_workflow_name(workflow)
        {
            problems.push(format!("workflow: {p}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Whether `url` can be a subscription's: `http(s)`, a host, no user or
/// password, and an IP literal only where `policy` allows it.
pub fn check_url(url: &str, policy: &AddressPolicy) -> Result<url::Url, String> {
    if url.chars().count() > URL_MAX_CHARS {
        return Err(format!("longer than {URL_MAX_CHARS} characters"));
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "a `{}:` URL; only http and https are delivered to",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("it must not hold a user name or password".to_owned());
    }
    let addr = match parsed.host() {
        Some(url::Host::Ipv4(addr)) => IpAddr::V4(addr),
        Some(url::Host::Ipv6(addr)) => IpAddr::V6(addr),
        Some(url::Host::Domain(_)) => return Ok(parsed),
        None => return Err(format!("`{url}` has no host")),
    };
    policy
        .check(addr)
        .map_err(|why| format!("the address {addr} is refused: {why}"))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(url: &str, events: &[&str], workflow: Option<&str>) -> WebhookSpec {
        WebhookSpec {
            url: url.to_owned(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            workflow: workflow.map(str::to_owned),
        }
    }

    #[test]
    fn a_sound_spec_passes_and_every_problem_is_named() {
        let policy = AddressPolicy::default();
        let good = spec(
            "https://hooks.example.com/retrace?x=1",
            &["execution_completed", "step_failed"],
            Some("billing.invoice"),
        );
        assert_eq!(good.check(&policy), Ok(()));
        let bad = spec(
            "ftp://example.com/",
            &["execution_completed", "nope", "execution_completed"],
            Some("-x"),
        );
        let problems = bad.check(&policy).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("url: a `ftp:` URL"));
        assert!(problems[1].starts_with("events: `nope` is not an event kind"));
        assert!(problems[1].contains("execution_started"));
        assert!(problems[2].contains("named twice"));
        assert!(problems[3].starts_with("workflow: "));
        assert!(spec("https://e.com", &[], None).check(&policy).is_err());
    }

    #[test]
    fn a_literal_address_the_policy_refuses_is_refused() {
        let policy = AddressPolicy::default();
        for refused in [
            "http://10.0.0.1/hook",
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://169.254.169.254/latest",
        ] {
            let e = check_url(refused, &policy).unwrap_err();
            assert!(e.contains("is refused"), "{refused}: {e}");
        }
        assert!(check_url("http://user:pw@example.com/", &policy).is_err());
        assert!(check_url("not a url", &policy).is_err());
        // A name is checked when a delivery connects.
        assert!(check_url("http://localhost:1/", &policy).is_ok());
        let loopback = AddressPolicy::parse(&["127.0.0.1/32".to_owned()], &[]).unwrap();
        assert!(check_url("http://127.0.0.1:8080/", &loopback).is_ok());
    }
}
