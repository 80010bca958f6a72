//! The regular expressions of CEL's `matches`, compiled with the `regex`
//! crate under size limits, and what compiling and matching cost.
//!
//! The `cel` crate would compile the pattern anew on every call, with no
//! limit but the regex crate's default (10 MiB, tens of milliseconds to
//! reach). Here a pattern is compiled at most once per evaluation (see
//! [`Patterns`]), or, if it is a string literal in the expression, once per
//! expression, when an evaluation first needs it ([`Literals`]); and never
//! to more than [`PATTERN_BYTES_MAX`] bytes: a pattern over that is an error
//! naming the limit (`\w{1000}`).
//!
//! How much a pattern compiles to is measured without a clock: it is
//! compiled under the smallest limit of [`TIERS`] first, then under the next
//! one each time the regex crate says it does not fit. The limit it fits in
//! prices compiling it (a quarter of a step per byte of the limit, plus a
//! step per byte of the pattern's text, charged before each attempt), and
//! matching a text with it (a number of steps per byte of the text). The
//! regex crate matches in time linear in the text, its factor growing with
//! the compiled size: so the price per byte grows with the tier.
//!
//! Semantics are cel's: the regex crate's default syntax, an unanchored
//! search (`is_match`), and the same message for a pattern that does not
//! parse.
//!
//! This module owns the limits, the tiers, their prices and the cache. It
//! must never read a clock, and what it charges and whether a pattern fits
//! must depend on nothing but the pattern's text and the length of the text
//! matched (the regex crate's size limits are counted, not timed).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use regex::{Regex, RegexBuilder};

/// The most bytes a pattern may compile to (the regex crate's `size_limit`,
/// the largest of [`TIERS`]).
pub(crate) const PATTERN_BYTES_MAX: usize = 1024 * 1024;

/// The regex crate's `dfa_size_limit` for every pattern: the memory its lazy
/// DFA may use while matching (it falls back to slower engines beyond it).
const DFA_BYTES_MAX: usize = 256 * 1024;

/// The size limits a pattern is compiled under, smallest first, each with the
/// steps it costs to try and the steps matching one byte of text costs with
/// a pattern that fits it.
const TIERS: [Tier; 4] = [
    Tier::new(16 * 1024, 1),
    Tier::new(64 * 1024, 4),
    Tier::new(256 * 1024, 16),
    Tier::new(PATTERN_BYTES_MAX, 64),
];

/// Most patterns one evaluation keeps compiled.
const CACHED_MAX: usize = 64;

/// Most bytes the patterns one evaluation keeps compiled may take: their
/// text, the limit each fits in and its DFA's memory.
const CACHED_BYTES_MAX: usize = 8 * 1024 * 1024;

/// One size limit, and what it costs.
#[derive(Debug, Clone, Copy)]
struct Tier {
    bytes: usize,
    compile_steps: u64,
    match_steps_per_byte: u64,
}

impl Tier {
    const fn new(bytes: usize, match_steps_per_byte: u64) -> Tier {
        Tier {
            bytes,
            compile_steps: bytes as u64 / 4,
            match_steps_per_byte,
        }
    }
}

/// Why a pattern could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum PatternError {
    /// It does not parse; in cel's own words (this text is recorded in
    /// evaluation errors, so it never changes).
    #[error("'{pattern}' not a valid regex:\n{source}")]
    Invalid {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    /// It compiles to more than [`PATTERN_BYTES_MAX`] bytes.
    #[error("the pattern of matches compiles to more than {PATTERN_BYTES_MAX} bytes")]
    TooLarge,
}

/// A compiled pattern, with the tier it fits in.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    regex: Regex,
    tier: Tier,
}

impl Pattern {
    /// Whether `text` contains a match, as cel's `matches`.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// The steps matching a text of `len` bytes costs.
    pub(crate) fn match_steps(&self, len: usize) -> u64 {
        u64::try_from(len)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
            .saturating_mul(self.tier.match_steps_per_byte)
    }
}

/// What compiling a pattern gave.
pub(crate) type Compiled = Result<Arc<Pattern>, PatternError>;

/// Compiles `pattern`, calling `charge` with the steps each attempt costs
/// before making it; an error of `charge` stops there and is returned.
pub(crate) fn compile<E>(
    pattern: &str,
    mut charge: impl FnMut(u64) -> Result<(), E>,
) -> Result<Compiled, E> {
    let text_steps = u64::try_from(pattern.len()).unwrap_or(u64::MAX);
    charge(text_steps)?;
    for tier in TIERS {
        charge(tier.compile_steps)?;
        let built = RegexBuilder::new(pattern)
            .size_limit(tier.bytes)
            .dfa_size_limit(DFA_BYTES_MAX)
            .build();
        match built {
            Ok(regex) => return Ok(Ok(Arc::new(Pattern { regex, tier }))),
            Err(regex::Error::CompiledTooBig(_)) => continue,
            Err(error) => {
                return Ok(Err(PatternError::Invalid {
                    pattern: pattern.to_owned(),
                    source: error,
                }));
            }
        }
    }
    Ok(Err(PatternError::TooLarge))
}

/// Compiles `pattern` with nothing to stop it; what it gave and the steps
/// [`compile`] would have charged for it.
fn compile_priced(pattern: &str) -> (u64, Compiled) {
    let mut steps = 0u64;
    let compiled = compile(pattern, |s| {
        steps = steps.saturating_add(s);
        Ok::<(), std::convert::Infallible>(())
    });
    match compiled {
        Ok(compiled) => (steps, compiled),
        Err(never) => match never {},
    }
}

/// The patterns of `matches` written as string literals in one expression,
/// each compiled the first time an evaluation needs it and then kept with
/// the expression. Never compiled when the expression is: defining a
/// workflow costs no regex compilation, whatever patterns it holds.
pub(crate) type Literals = HashMap<String, OnceLock<(u64, Compiled)>>;

/// The [`Literals`] of the patterns `patterns`, none compiled yet.
pub(crate) fn literals(patterns: impl IntoIterator<Item = String>) -> Literals {
    patterns.into_iter().map(|p| (p, OnceLock::new())).collect()
}

/// The patterns of one evaluation: the expression's literals, and those
/// compiled during it, up to [`CACHED_MAX`] of them and [`CACHED_BYTES_MAX`]
/// bytes; past that, a new pattern is compiled (and charged) on every call.
///
/// A literal costs an evaluation what compiling it costs, once, whether this
/// evaluation compiled it or an earlier one did: so what an evaluation is
/// charged never depends on which evaluations came before.
#[derive(Debug, Default)]
pub(crate) struct Patterns {
    literals: Arc<Literals>,
    literals_charged: HashSet<String>,
    cached: HashMap<String, Compiled>,
    cached_bytes: usize,
}

impl Patterns {
    /// The patterns of an evaluation of an expression whose string literal
    /// patterns are `literals`.
    pub(crate) fn new(literals: Arc<Literals>) -> Patterns {
        Patterns {
            literals,
            ..Patterns::default()
        }
    }

    /// `pattern` compiled, from the expression or this evaluation if it was
    /// before, else compiled now, `charge` called as [`compile`] does.
    pub(crate) fn get<E>(
        &mut self,
        pattern: &str,
        mut charge: impl FnMut(u64) -> Result<(), E>,
    ) -> Result<Compiled, E> {
        if let Some(compiled) = self.cached.get(pattern) {
            return Ok(compiled.clone());
        }
        if let Some(slot) = self.literals.get(pattern) {
            let (steps, compiled) = slot.get_or_init(|| compile_priced(pattern));
            if !self.literals_charged.contains(pattern) {
                charge(*steps)?;
                self.literals_charged.insert(pattern.to_owned());
            }
            return Ok(compiled.clone());
        }
        let compiled = compile(pattern, charge)?;
        let bytes = pattern.len().saturating_add(match &compiled {
            Ok(compiled) => compiled.tier.bytes.saturating_add(DFA_BYTES_MAX),
            Err(_) => 0,
        });
        let total = self.cached_bytes.saturating_add(bytes);
        if self.cached.len() < CACHED_MAX && total <= CACHED_BYTES_MAX {
            self.cached_bytes = total;
            self.cached.insert(pattern.to_owned(), compiled.clone());
        }
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steps compiling `pattern` costs, and what it gave.
    fn priced(pattern: &str) -> (u64, Compiled) {
        let mut steps = 0u64;
        let compiled = compile(pattern, |s| {
            steps += s;
            Ok::<(), ()>(())
        });
        match compiled {
            Ok(compiled) => (steps, compiled),
            Err(()) => panic!("charging cannot fail here"),
        }
    }

    #[test]
    fn small_patterns_cost_the_first_tier() {
        let (steps, compiled) = priced("^[a-z]+$");
        assert_eq!(steps, 8 + TIERS[0].compile_steps);
        let pattern = compiled.unwrap();
        assert!(pattern.is_match("abc") && !pattern.is_match("ab1"));
        assert_eq!(pattern.match_steps(3), 4);
    }

    #[test]
    fn larger_patterns_cost_more_to_compile_and_to_match() {
        let (steps, compiled) = priced(r"\w{10}");
        let pattern = compiled.unwrap();
        assert!(steps > TIERS[0].compile_steps + TIERS[1].compile_steps);
        assert!(pattern.match_steps(100) > 100 * TIERS[0].match_steps_per_byte);
    }

    #[test]
    fn patterns_over_the_limit_are_refused_after_every_tier() {
        for pattern in [r"\w{1000}", "((a{100}){100}){100}", r"(\w{10}){10}"] {
            let (steps, compiled) = priced(pattern);
            assert_eq!(compiled.unwrap_err(), PatternError::TooLarge, "{pattern}");
            let tiers: u64 = TIERS.iter().map(|t| t.compile_steps).sum();
            assert_eq!(steps, pattern.len() as u64 + tiers);
        }
        assert_eq!(
            PatternError::TooLarge.to_string(),
            "the pattern of matches compiles to more than 1048576 bytes"
        );
    }

    #[test]
    fn invalid_patterns_say_what_cel_says() {
        let (_, compiled) = priced("(foo");
        assert_eq!(
            compiled.unwrap_err().to_string(),
            "'(foo' not a valid regex:\nregex parse error:\n    (foo\n    ^\nerror: unclosed group"
        );
    }

    #[test]
    fn a_pattern_is_compiled_once_per_evaluation() {
        let literals = Arc::new(literals(["a".to_owned()]));
        let mut patterns = Patterns::new(literals.clone());
        let mut charged = 0;
        let mut get = |pattern: &str| {
            patterns
                .get(pattern, |_| {
                    charged += 1;
                    Ok::<(), ()>(())
                })
                .unwrap()
        };
        assert!(get("a").is_ok());
        assert!(get("a").is_ok());
        assert!(get("b").is_ok());
        assert!(get("b").is_ok());
        assert!(get("(").is_err());
        assert!(get("(").is_err());
        // "a": once, in one charge; "b" and "(": the text, then one tier each.
        assert_eq!(charged, 5);
    }

    #[test]
    fn a_literal_costs_every_evaluation_the_same_and_compiles_once() {
        let literals = Arc::new(literals([r"\w{1000}".to_owned()]));
        let steps_of = |literals: &Arc<Literals>| {
            let mut patterns = Patterns::new(literals.clone());
            let mut steps = 0u64;
            let compiled = patterns
                .get(r"\w{1000}", |s| {
                    steps += s;
                    Ok::<(), ()>(())
                })
                .unwrap();
            assert_eq!(compiled.unwrap_err(), PatternError::TooLarge);
            steps
        };
        assert!(
            literals[r"\w{1000}"].get().is_none(),
            "not compiled up front"
        );
        let first = steps_of(&literals);
        assert!(
            literals[r"\w{1000}"].get().is_some(),
            "kept after the first"
        );
        assert_eq!(steps_of(&literals), first);
        assert_eq!(first, priced(r"\w{1000}").0);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut patterns = Patterns::default();
        for n in 0..CACHED_MAX + 10 {
            let _ = patterns.get(&format!("a{n}"), |_| Ok::<(), ()>(()));
        }
        assert!(patterns.cached.len() <= CACHED_MAX);
        assert!(patterns.cached_bytes <= CACHED_BYTES_MAX);
    }
}
