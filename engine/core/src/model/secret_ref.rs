//! Secret references: the text `${ secret('NAME') }` written in a task's
//! input where a secret's value belongs (the built-in `http` capability's
//! url, header values, query values and text body), so that a workflow,
//! its executions' inputs and the journal name a secret without holding it.
//!
//! Owns the syntax: a reference is `${`, `secret(`, the name in single or
//! double quotes, `)` and `}`, with whitespace allowed around the call and
//! the name (`${secret("API_TOKEN")}` and `${ secret('API_TOKEN') }` are the
//! same reference); a name is 1 to [`SECRET_NAME_LEN_MAX`] ASCII letters,
//! digits and `_`, not starting with a digit (so `RETRACE_SECRET_<NAME>` is
//! a valid environment variable). Finding the references in a text, and
//! substituting values for them through a lookup the caller gives.
//!
//! It must never hold or learn a secret's value: the runtime's lookup
//! supplies values when it builds a request, and a mapping keeps a string
//! that is wholly a reference as the literal text (see `mapping`), never
//! as an expression, so what is recorded is always the reference.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// The longest secret name, in bytes.
pub const SECRET_NAME_LEN_MAX: usize = 128;

/// A whole reference; group 1 or 2 is the name as written between quotes.
#[allow(clippy::expect_used)] // A constant pattern: the unit tests compile it.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\$\{\s*secret\s*\(\s*(?:'([^'"]*)'|"([^'"]*)")\s*\)\s*\}"#)
        .expect("the secret reference pattern compiles")
});

/// The start of something meant as a reference (to report one that is
/// malformed rather than pass it on as text).
#[allow(clippy::expect_used)] // A constant pattern: the unit tests compile it.
static OPENING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\{\s*secret\s*\(").expect("the secret opening pattern compiles")
});

/// One reference found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef<'t> {
    /// Where the whole reference is, in bytes of the text.
    pub range: Range<usize>,
    /// The secret's name, as written.
    pub name: &'t str,
}

/// Why a text's references cannot be resolved. Neither ever holds a
/// secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    /// A reference that does not follow the syntax, or a bad name.
    #[error("{0}")]
    Malformed(String),
    /// The lookup knows no secret of this name.
    #[error("no secret named {0} is configured")]
    Unknown(String),
}

/// Checks a secret's name: 1 to 128 ASCII letters, digits and `_`, not
/// starting with a digit.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && name.len() <= SECRET_NAME_LEN_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "secret name `{name}` is not well-formed: 1 to {SECRET_NAME_LEN_MAX} ASCII letters, \
             digits and `_`, not starting with a digit"
        ))
    }
}

/// Every reference in `text`, in order; an error names the first that is
/// malformed (an opening `${ secret(` that does not complete a reference,
/// or a bad name).
pub fn secret_refs(text: &str) -> Result<Vec<SecretRef<'_>>, SecretRefError> {
    let mut found = Vec::new();
    for captures in REFERENCE.captures_iter(text) {
        let (Some(whole), Some(name)) = (captures.get(0), captures.get(1).or(captures.get(2)))
        else {
            continue;
        };
        check_secret_name(name.as_str()).map_err(SecretRefError::Malformed)?;
        found.push(SecretRef {
            range: whole.range(),
            name: name.as_str(),
        });
    }
    if let Some(open) = OPENING
        .find_iter(text)
        .find(|open| !found.iter().any(|r| r.range.start == open.start()))
    {
        return Err(SecretRefError::Malformed(format!(
            "`{}` at byte {} does not complete a secret reference; write \
             `${{ secret('NAME') }}`",
            open.as_str(),
            open.start()
        )));
    }
    Ok(found)
}

/// Whether `text` is exactly one well-formed reference and nothing else.
pub fn is_secret_ref(text: &str) -> bool {
    matches!(secret_refs(text).as_deref(), Ok([one]) if one.range == (0..text.len()))
}

/// `text` with each reference replaced by `value(name)`; the first name
/// `value` does not know is [`SecretRefError::Unknown`].
pub fn substitute_secrets<'v>(
    text: &str,
    mut value: impl FnMut(&str) -> Option<&'v str>,
) -> Result<String, SecretRefError> {
    let refs = secret_refs(text)?;
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for r in refs {
        let found = value(r.name).ok_or_else(|| SecretRefError::Unknown(r.name.to_owned()))?;
        out.push_str(text.get(from..r.range.start).unwrap_or_default());
        out.push_str(found);
        from = r.range.end;
    }
    out.push_str(text.get(from..).unwrap_or_default());
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn references_are_found_in_any_spelling() {
        for text in [
            "${ secret('API_TOKEN') }",
            "${secret('API_TOKEN')}",
            "${ secret(\"API_TOKEN\") }",
            "${\tsecret ( 'API_TOKEN' )\n}",
        ] {
            assert!(is_secret_ref(text), "{text}");
            let refs = secret_refs(text).unwrap();
            assert_eq!(refs.len(), 1);
            assert_eq!(refs[0].name, "API_TOKEN");
        }
        let text = "Bearer ${ secret('a') } and ${secret(\"_b2\")}!";
        let names: Vec<&str> = secret_refs(text).unwrap().iter().map(|r| r.name).collect();
        assert_eq!(names, ["a", "_b2"]);
        assert!(!is_secret_ref(text));
        assert!(!is_secret_ref(" ${ secret('a') }"));
        assert!(
            secret_refs("no reference, ${ input.x }, $ {secret}")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_references_and_names_are_named() {
        for (text, says) in [
            (
                "${ secret(TOKEN) }",
                "`${ secret(` at byte 0 does not complete",
            ),
            ("x ${ secret('T' }", "at byte 2 does not complete"),
            ("${ secret('a\"b') }", "does not complete"),
            (
                "${ secret('my-key') }",
                "secret name `my-key` is not well-formed",
            ),
            ("${ secret('') }", "secret name `` is not well-formed"),
            ("${ secret('1abc') }", "not starting with a digit"),
        ] {
            let e = secret_refs(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let long = format!("${{ secret('{}') }}", "a".repeat(SECRET_NAME_LEN_MAX + 1));
        assert!(secret_refs(&long).is_err());
        let longest = format!("${{ secret('{}') }}", "a".repeat(SECRET_NAME_LEN_MAX));
        assert!(is_secret_ref(&longest));
    }

    #[test]
    fn substitution_replaces_each_reference_and_names_an_unknown_one() {
        let lookup = |name: &str| match name {
            "A" => Some("1"),
            "B" => Some("two"),
            _ => None,
        };
        assert_eq!(
            substitute_secrets("x${ secret('A') }y${secret(\"B\")}z", lookup).unwrap(),
            "x1ytwoz"
        );
        assert_eq!(substitute_secrets("plain", lookup).unwrap(), "plain");
        assert_eq!(
            substitute_secrets("${ secret('C') }", lookup),
            Err(SecretRefError::Unknown("C".into()))
        );
    }
}
