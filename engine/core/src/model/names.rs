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
//! | error type      | `A-Z a-z 0-9`   | `A-Z a-z 0-9 _ . : -` |
//! | variable name   | `A-Z a-z _`     | `A-Z a-z 0-9 _`, not a CEL reserved word |
//!
//! Every name is at most [`NAME_LEN_MAX`] bytes.

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
}
