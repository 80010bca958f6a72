//! The spelling rules for the names a workflow uses: step ids, workflow and
//! event names, capabilities, error types and variable names.
//!
//! Owns the rules and their messages, so a rule and the sentence explaining it
//! change together. It must never look beyond the one name it is given.
//!
//! | name            | first character | other characters    |
//! |-----------------|-----------------|---------------------|
//! | step id         | `A-Z a-z 0-9 _` | `A-Z a-z 0-9 _ -`   |
//! | workflow name   | `A-Z a-z 0-9`   | `A-Z a-z 0-9 _ . -` |
//! | capability      | `a-z 0-9`       | `a-z 0-9 _ . : -`   |
//! | event name      | `A-Z a-z 0-9`   | `A-Z a-z 0-9 _ . : / -` |
//! | token name      | `A-Z a-z 0-9`   | `A-Z a-z 0-9 _ . -` |
//! | error type      | `A-Z a-z 0-9`   | `A-Z a-z 0-9 _ . : -` |
//! | variable name   | `A-Z a-z _`     | `A-Z a-z 0-9 _`, not a CEL reserved word |
//!
//! Every name is at most [`NAME_LEN_MAX`] bytes.
//!
//! Also owns the one rule for every name and free text that reaches the
//! journal or the logs, wherever it comes from (agent names, idempotency
//! keys, error types and messages, operator reasons): no Unicode control
//! character (general category Cc: U+0000 to U+001F, U+007F to U+009F), no
//! bidirectional control (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to
//! U+2069). A bidirectional override makes a log line or a listing read
//! differently from what it holds, and a control character can forge a line
//! of its own or drive a terminal. Names refuse all of them
//! ([`check_name_chars`]); free text ([`check_text`]) keeps tab, line feed
//! and carriage return, which every log format escapes. A refusal names the
//! character as `U+XXXX`, never by printing it.

/// The longest name accepted, in bytes.
pub const NAME_LEN_MAX: usize = 128;

/// Words CEL reserves; a variable with one of these names could not be read
/// as `variables.<name>` in an expression.
const CEL_RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "package",
    "namespace",
    "null",
    "return",
    "true",
    "var",
    "void",
    "while",
];

/// A character no name may hold, with what it is.
fn unsafe_char(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        c if c.is_control() => "a control character",
        _ => return None,
    })
}

fn refuse(what: &str, c: char, description: &str) -> String {
    format!(
        "{what} must not contain U+{:04X} ({description}): no control characters or \
         bidirectional controls",
        u32::from(c)
    )
}

/// The rule for every name that reaches the journal or the logs: no control
/// character and no bidirectional control (see the module doc).
/// The error names the first one as `U+XXXX`.
pub fn check_name_chars(what: &str, name: &str) -> Result<(), String> {
    match name
        .chars()
        .find_map(|c| unsafe_char(c).map(|description| (c, description)))
    {
        Some((c, description)) => Err(refuse(what, c, description)),
        None => Ok(()),
    }
}

/// The rule for free text that reaches the journal or the logs (a reason,
/// an error message): as [`check_name_chars`], but tab, line feed and
/// carriage return are kept.
pub fn check_text(what: &str, text: &str) -> Result<(), String> {
    match text
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .find_map(|c| unsafe_char(c).map(|description| (c, description)))
    {
        Some((c, description)) => Err(refuse(what, c, description)),
        None => Ok(()),
    }
}

/// Free text with every character [`check_text`] refuses written out as
/// its escape (`\u{202E}`), for text that must be kept rather than refused:
/// an agent's error message quotes a program's output, colour codes and
/// right-to-left marks included, and refusing it would lose the failure.
pub fn escape_text(text: &str) -> std::borrow::Cow<'_, str> {
    let refused = |c: char| !matches!(c, '\t' | '\n' | '\r') && unsafe_char(c).is_some();
    if !text.chars().any(refused) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if refused(c) {
            escaped.push_str(&format!("\\u{{{:X}}}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

fn check(
    name: &str,
    what: &str,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
    rule: &str,
) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if name.len() > NAME_LEN_MAX {
        return Err(format!("{what} is longer than {NAME_LEN_MAX} bytes"));
    }
    check_name_chars(what, name)?;
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(first);
    if !starts_well || !chars.all(rest) {
        return Err(format!("{what} `{name}` is not well-formed: {rule}"));
    }
    Ok(())
}

/// A step id: `fetch_data`, `Step-2`.
pub fn check_step_id(name: &str) -> Result<(), String> {
    check(
        name,
        "step id",
        |c| c.is_ascii_alphanumeric() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
        "use letters, digits, `_` and `-`, not starting with `-`",
    )
}

/// A workflow name: `data_processing`, `billing.invoice-v2`.
pub fn check_workflow_name(name: &str) -> Result<(), String> {
    check(
        name,
        "workflow name",
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
        "use letters, digits, `_`, `.` and `-`, starting with a letter or digit",
    )
}

/// An access token's name: `ci-deployer`, `agent.builds-1` (the actor the
/// journal records for what its holder does).
pub fn check_token_name(name: &str) -> Result<(), String> {
    check(
        name,
        "token name",
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
        "use letters, digits, `_`, `.` and `-`, starting with a letter or digit",
    )
}

/// A capability: `git_operations`, `http.call`, `billing:charge`.
pub fn check_capability(name: &str) -> Result<(), String> {
    check(
        name,
        "capability",
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-'),
        "use lowercase letters, digits, `_`, `.`, `:` and `-`, starting with a letter or digit",
    )
}

/// An external event's name: `approval`, `github/push`, `order:paid`.
pub fn check_event_name(name: &str) -> Result<(), String> {
    check(
        name,
        "event name",
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-'),
        "use letters, digits, `_`, `.`, `:`, `/` and `-`, starting with a letter or digit",
    )
}

/// An error type, as matched by `nonRetryable` and `errorHandlers[].error`.
pub fn check_error_type(name: &str) -> Result<(), String> {
    check(
        name,
        "error type",
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'),
        "use letters, digits, `_`, `.`, `:` and `-`, starting with a letter or digit",
    )
}

/// A variable name (a key of a step's `output`): readable as `variables.<name>`.
pub fn check_variable_name(name: &str) -> Result<(), String> {
    check(
        name,
        "variable name",
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_',
        "use letters, digits and `_`, starting with a letter or `_`",
    )?;
    if CEL_RESERVED.contains(&name) {
        return Err(format!(
            "variable name `{name}` is a reserved word in expressions; choose another"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_spellings() {
        for id in ["fetch_data", "Step-2", "_private", "3rd"] {
            assert_eq!(check_step_id(id), Ok(()), "{id}");
        }
        for name in ["data_processing", "billing.invoice-v2"] {
            assert_eq!(check_workflow_name(name), Ok(()), "{name}");
        }
        for name in ["git_operations", "http.call", "billing:charge", "3d-render"] {
            assert_eq!(check_capability(name), Ok(()), "{name}");
        }
        for name in ["approval", "github/push", "order:paid"] {
            assert_eq!(check_event_name(name), Ok(()), "{name}");
        }
        for name in ["issues", "_tmp", "testResults2"] {
            assert_eq!(check_variable_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_the_rest_with_the_rule() {
        assert!(check_step_id("").is_err());
        assert!(check_step_id("-x").is_err());
        assert!(check_step_id("a.b").is_err());
        assert!(check_step_id(&"a".repeat(NAME_LEN_MAX + 1)).is_err());
        assert!(check_workflow_name("Project Setup").is_err());
        assert_eq!(
            check_capability("Git Ops"),
            Err(
                "capability `Git Ops` is not well-formed: use lowercase letters, digits, \
                 `_`, `.`, `:` and `-`, starting with a letter or digit"
                    .to_owned()
            )
        );
        assert!(check_variable_name("in").is_err());
        assert!(check_variable_name("my-var").is_err());
        assert!(check_error_type("*").is_err());
    }

    #[test]
    fn control_and_bidi_characters_are_named_not_printed() {
        assert_eq!(
            check_step_id("a\u{202E}b"),
            Err(
                "step id must not contain U+202E (RIGHT-TO-LEFT OVERRIDE): no control \
                 characters or bidirectional controls"
                    .to_owned()
            )
        );
        for c in [
            '\u{0}', '\u{7}', '\n', '\u{1B}', '\u{7F}', '\u{85}', '\u{9F}', '\u{061C}', '\u{200E}',
            '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}',
            '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            let name = format!("agent{c}x");
            let error = check_name_chars("agent name", &name).unwrap_err();
            assert!(
                error.contains(&format!("U+{:04X}", u32::from(c))),
                "{error}"
            );
            assert!(!error.contains(c), "the message escapes it: {error:?}");
            for check in [
                check_step_id,
                check_workflow_name,
                check_capability,
                check_event_name,
                check_error_type,
                check_variable_name,
            ] {
                assert!(check(&name).unwrap_err().contains("U+"), "{name:?}");
            }
        }
        // Other text is welcome in names that allow it.
        for name in [
            "Zoë",
            "агент-1",
            "名前",
            "a b",
            "\u{200D}",
            "عامل",
            "a\u{2028}b",
        ] {
            assert_eq!(check_name_chars("agent name", name), Ok(()), "{name}");
        }
    }

    #[test]
    fn escaped_text_shows_what_it_held() {
        assert_eq!(escape_text("exit 1: boom\n\tat x"), "exit 1: boom\n\tat x");
        assert_eq!(
            escape_text("\u{1B}[31mred\u{1B}[0m \u{202E}txt"),
            "\\u{1B}[31mred\\u{1B}[0m \\u{202E}txt"
        );
        assert_eq!(
            check_text("message", &escape_text("a\u{2067}\u{7}b")),
            Ok(())
        );
    }

    #[test]
    fn free_text_keeps_tabs_and_line_breaks_only() {
        assert_eq!(check_text("reason", "line 1\n\tline 2\r\n"), Ok(()));
        assert!(
            check_text("reason", "a\u{202E}b")
                .unwrap_err()
                .contains("U+202E")
        );
        assert!(
            check_text("reason", "\u{1B}[31mred")
                .unwrap_err()
                .contains("U+001B")
        );
    }
}
