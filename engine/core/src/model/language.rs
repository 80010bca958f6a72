//! Versions of the workflow language: what a definition's strings and
//! expressions mean.
//!
//! Owns the list of versions, which one a definition is read with, and the
//! rule that keeps old meanings forever: a definition is recorded with the
//! version it was written for (its `language` field, which the engine adds
//! to a new definition that does not give one), and a stored definition
//! without the field is version 1, the language before versions existed.
//! So an execution, which is pinned to its definition's version hash, keeps
//! the meaning it started with whatever later builds add. It must never
//! change what an existing version means: a change of meaning is a new
//! version.
//!
//! - **Version 1**: a mapping string starting with `$.` is a plain path;
//!   only a string that is wholly `${ … }` is an expression; everything
//!   else is literal. Expressions are plain CEL.
//! - **Version 2** (the newest), which reads the orchestrator
//!   specification's workflows as they are written (the dialect, see
//!   `dialect`): a `$.` string that is not a plain path is an expression;
//!   `${ … }` inside a longer string is interpolated; `||` and `&&` on
//!   values that are not booleans pick an operand as JavaScript does (and
//!   inside their operands a missing field reads as `null`, as a path
//!   does); `.length` is the size of a list or a string; and a handler
//!   workflow may read the error's flat context (`$.workflowName`,
//!   `$.executionId`, `$.stepId`, and `$.error`).

use std::fmt;

/// A version of the workflow language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Language {
    /// The language before versions: paths, whole `${ … }` expressions, CEL.
    V1,
    /// Version 1 plus the orchestrator specification's dialect.
    V2,
}

impl Language {
    /// The version a new definition without a `language` field is recorded
    /// with.
    pub const NEWEST: Language = Language::V2;

    /// Every version, oldest first.
    pub const ALL: [Language; 2] = [Language::V1, Language::V2];

    /// The number written in a definition's `language` field.
    pub fn number(self) -> u64 {
        match self {
            Language::V1 => 1,
            Language::V2 => 2,
        }
    }

    /// The version numbered `number`, if there is one.
    pub fn from_number(number: u64) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.number() == number)
    }

    /// The version a definition whose `language` field holds `field` is
    /// read with: absent means version 1 (only a stored definition can lack
    /// it; a new one is given [`Language::NEWEST`] when it is decoded).
    pub fn of(field: Option<u64>) -> Language {
        field
            .and_then(Language::from_number)
            .unwrap_or(Language::V1)
    }

    /// Whether the specification's dialect applies.
    pub fn has_dialect(self) -> bool {
        self >= Language::V2
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_and_absent_is_version_1() {
        for language in Language::ALL {
            assert_eq!(Language::from_number(language.number()), Some(language));
        }
        assert_eq!(Language::of(None), Language::V1);
        assert_eq!(Language::of(Some(2)), Language::V2);
        assert_eq!(Language::from_number(3), None);
        assert!(Language::NEWEST.has_dialect());
        assert!(!Language::V1.has_dialect());
    }
}
