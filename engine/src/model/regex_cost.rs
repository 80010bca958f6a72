//! What a regular expression costs CEL's `matches`, estimated from its text.
//!
//! The `cel` crate compiles the pattern anew on every call, and compiling
//! grows with what the pattern expands to, not with its length: `\w` alone
//! (every Unicode word character) takes longer than a hundred ASCII letters,
//! and `\w{100}` a hundred times that. So `matches` is charged, in steps of
//! the evaluation budget (see `budget`), an estimate of the compiled size:
//! each piece of the pattern weighs what its kind costs to compile, measured
//! once, times the repetitions around it; and matching a text is charged its
//! length times that size, over [`MATCH_BYTES_PER_STEP`].
//!
//! This module owns that estimate. It must never reject or interpret a
//! pattern (the `regex` crate does, when CEL calls it): a pattern it does not
//! understand is still estimated, by reading its characters as literals, and
//! the estimate must depend on nothing but the pattern's text.

/// What every compile costs, however small the pattern.
const BASE: u64 = 256;
/// A literal character, or an assertion (`^`, `$`, `\b`).
const LITERAL: u64 = 16;
/// A class written with brackets, before its contents.
const CLASS: u64 = 64;
/// A character inside a bracketed class.
const CLASS_CHAR: u64 = 8;
/// `.`, or a negated class: nearly every character, in UTF-8.
const ANY: u64 = 2_000;
/// `\s`, `\S`.
const SPACE: u64 = 800;
/// `\d`, `\D`.
const DIGIT: u64 = 1_600;
/// `\w`, `\W`, `\p{…}`, `\P{…}`: Unicode classes of thousands of ranges.
const UNICODE: u64 = 16_000;
/// A group setting flags, such as `(?i)`: case folding tables.
const FLAGS: u64 = 1_000;

/// Bytes of text matched per step, per step of the pattern's compile cost:
/// matching can take the text's length times the compiled size.
pub(crate) const MATCH_BYTES_PER_STEP: u64 = 65_536;

/// One level of grouping: what it holds so far, and its last piece (which a
/// repetition that follows multiplies).
#[derive(Default)]
struct Group {
    total: u64,
    last: u64,
}

impl Group {
    fn piece(&mut self, cost: u64) {
        self.total = self.total.saturating_add(cost);
        self.last = cost;
    }

    fn repeat(&mut self, times: u64) {
        let extra = self.last.saturating_mul(times.saturating_sub(1));
        self.total = self.total.saturating_add(extra);
        self.last = self.last.saturating_mul(times.max(1));
    }
}

/// The estimated cost, in steps, of compiling `pattern`.
pub(crate) fn compile_cost(pattern: &str) -> u64 {
    let chars: Vec<char> = pattern.chars().collect();
    let mut groups = vec![Group::default()];
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        at += 1;
        let Some(group) = groups.last_mut() else {
            break;
        };
        match c {
            '\\' => {
                let (cost, next) = escape(&chars, at);
                group.piece(cost);
                at = next;
            }
            '[' => {
                let (cost, next) = class(&chars, at);
                group.piece(cost);
                at = next;
            }
            '.' => group.piece(ANY),
            '(' => {
                let mut flags = false;
                if chars.get(at) == Some(&'?') {
                    // `(?:`, `(?P<name>`, `(?<name>`, `(?i)`, `(?i:`.
                    let end = chars[at..]
                        .iter()
                        .position(|c| matches!(c, ':' | ')' | '>'))
                        .map_or(chars.len(), |n| at + n);
                    let spec = &chars[(at + 1).min(end)..end.min(chars.len())];
                    flags = !spec.is_empty() && spec.iter().all(|c| "imsuxRU-".contains(*c));
                    if chars.get(end) == Some(&')') {
                        // Flags for the rest of the group: no group of its own.
                        group.total = group.total.saturating_add(FLAGS);
                        at = end + 1;
                        continue;
                    }
                    at = (end + 1).min(chars.len());
                }
                let mut inner = Group::default();
                if flags {
                    inner.total = FLAGS;
                }
                groups.push(inner);
            }
            ')' => {
                if groups.len() > 1
                    && let Some(inner) = groups.pop()
                    && let Some(outer) = groups.last_mut()
                {
                    outer.piece(inner.total);
                }
            }
            '*' | '?' => {}
            '+' => group.repeat(2),
            '{' => match repetition(&chars, at) {
                Some((times, next)) => {
                    group.repeat(times);
                    at = next;
                }
                None => group.piece(LITERAL),
            },
            _ => group.piece(LITERAL),
        }
    }
    // Groups left open are an error the regex crate reports; count them.
    groups
        .into_iter()
        .map(|group| group.total)
        .fold(BASE, u64::saturating_add)
}

/// The cost of the escape after a `\` at `at`, and where the pattern goes on.
fn escape(chars: &[char], at: usize) -> (u64, usize) {
    let Some(&c) = chars.get(at) else {
        return (LITERAL, at);
    };
    let next = at + 1;
    match c {
        'w' | 'W' => (UNICODE, next),
        'd' | 'D' => (DIGIT, next),
        's' | 'S' => (SPACE, next),
        'p' | 'P' => (UNICODE, skip_braces(chars, next).unwrap_or(next + 1)),
        'x' | 'u' | 'U' => (LITERAL, skip_braces(chars, next).unwrap_or(next)),
        _ => (LITERAL, next),
    }
}

/// Just past the `}` of a `{…}` at `at`, if there is one.
fn skip_braces(chars: &[char], at: usize) -> Option<usize> {
    if chars.get(at) != Some(&'{') {
        return None;
    }
    let close = chars[at..].iter().position(|c| *c == '}')?;
    Some(at + close + 1)
}

/// The cost of the bracketed class whose `[` is just before `at`, and where
/// the pattern goes on (its end if the class is not closed).
///
/// A class costs little when it holds a few ASCII characters. Anything that
/// may span much of Unicode (a negation, a character given by its code, a
/// character outside ASCII) costs as much as `.`, a Unicode class as itself.
fn class(chars: &[char], mut at: usize) -> (u64, usize) {
    let mut cost = CLASS;
    // A `]` first (after a `^`) is a literal.
    if chars.get(at) == Some(&'^') {
        cost = cost.saturating_add(ANY);
        at += 1;
    }
    if chars.get(at) == Some(&']') {
        cost = cost.saturating_add(CLASS_CHAR);
        at += 1;
    }
    let mut depth = 1usize;
    while at < chars.len() {
        let c = chars[at];
        at += 1;
        let char_cost = match c {
            '\\' => {
                let code = matches!(chars.get(at), Some('x' | 'u' | 'U'));
                let (escaped, next) = escape(chars, at);
                at = next;
                if code {
                    ANY
                } else if escaped == LITERAL {
                    CLASS_CHAR
                } else {
                    escaped
                }
            }
            '[' => {
                depth += 1;
                CLASS_CHAR
            }
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return (cost, at);
                }
                CLASS_CHAR
            }
            '^' => ANY,
            c if !c.is_ascii() => ANY,
            _ => CLASS_CHAR,
        };
        cost = cost.saturating_add(char_cost);
    }
    (cost, at)
}

/// The number of copies a `{n}`, `{n,}` or `{n,m}` whose `{` is just before
/// `at` makes, and where the pattern goes on; `None` if it is not one (the
/// `{` is then a literal).
fn repetition(chars: &[char], at: usize) -> Option<(u64, usize)> {
    let close = at + chars[at..].iter().position(|c| *c == '}')?;
    let inside: String = chars[at..close].iter().collect();
    let (low, high) = match inside.split_once(',') {
        None => (inside.trim(), None),
        Some((low, high)) => (low.trim(), Some(high.trim())),
    };
    let number = |text: &str| -> Option<u64> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(text.parse::<u64>().unwrap_or(u64::MAX))
    };
    let low = number(low)?;
    let times = match high {
        None => low,
        Some("") => low.saturating_add(1),
        Some(high) => number(high)?,
    };
    Some((times.max(1), close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_patterns_are_cheap() {
        assert_eq!(compile_cost("a"), BASE + LITERAL);
        assert_eq!(compile_cost("^ab$"), BASE + 4 * LITERAL);
        assert_eq!(compile_cost("[a-z]+"), BASE + 2 * (CLASS + 3 * CLASS_CHAR));
        assert!(compile_cost(r"^[a-z0-9._-]+@[a-z]+\.com$") < 2_000);
    }

    #[test]
    fn unicode_classes_and_repetitions_are_dear() {
        assert_eq!(compile_cost(r"\w"), BASE + UNICODE);
        assert_eq!(compile_cost(r"\w{100}"), BASE + 100 * UNICODE);
        assert_eq!(compile_cost(r"(\d{10}){10}"), BASE + 100 * DIGIT);
        assert_eq!(compile_cost(r"\p{Greek}{3,5}"), BASE + 5 * UNICODE);
        assert_eq!(compile_cost(r"x{2,}"), BASE + 3 * LITERAL);
        assert_eq!(compile_cost("[^a]"), BASE + CLASS + ANY + CLASS_CHAR);
        assert_eq!(
            compile_cost(r"[\x{0}-\x{10FFFF}]"),
            BASE + CLASS + 2 * ANY + CLASS_CHAR
        );
        assert!(compile_cost("[[:^alpha:]]") > ANY);
        assert!(compile_cost("[é]") > ANY);
        assert_eq!(compile_cost(r"[\d_]"), BASE + CLASS + DIGIT + CLASS_CHAR);
        assert_eq!(compile_cost("(?i)a"), BASE + FLAGS + LITERAL);
        assert_eq!(compile_cost("(?i:ab)+"), BASE + 2 * (FLAGS + 2 * LITERAL));
        assert_eq!(compile_cost("(?P<x>a)(?:b)"), BASE + 2 * LITERAL);
    }

    #[test]
    fn huge_repetitions_saturate() {
        assert_eq!(compile_cost(r"\w{99999999999999999999999}"), u64::MAX);
        assert_eq!(
            compile_cost("((a{1000}){1000}){1000}"),
            BASE + 16 * 1_000_000_000
        );
    }

    #[test]
    fn broken_patterns_are_still_estimated() {
        for pattern in [
            "(", ")", "[", "[]", "\\", "a{", "a{1", "a{,2}", "(?", "(?P<x", "\\p{",
        ] {
            assert!(compile_cost(pattern) >= BASE, "{pattern}");
        }
        assert_eq!(compile_cost("a{x}"), BASE + 4 * LITERAL);
    }
}
