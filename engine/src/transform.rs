//! Field transforms and sync filters written in CEL (Common Expression Language).
//!
//! CEL has no loops, IO or side effects, which makes it a safe language for users'
//! expressions; syncledger still bounds what one expression may cost:
//! - the source is at most [`MAX_SOURCE`] bytes and [`MAX_NESTING`] brackets deep, and
//!   the parsed tree at most [`ast::MAX_DEPTH`] levels (parser and evaluator recurse);
//! - it may only read the variables `value` (the field being mapped, a string or null)
//!   and `record` (every CRM field of the record, by name), and call the functions
//!   our evaluator implements;
//! - comprehension macros (`map`, `filter`, `all`, `exists`, `exists_one`) are refused;
//! - it is evaluated by our own evaluator (`eval.rs`), not the CEL interpreter, because
//!   that one cannot be stopped: every node and every byte or list slot an evaluation
//!   produces is charged to a budget of [`MAX_WORK`] units *before* it is allocated, and
//!   the evaluation checks its deadline ([`TIME_LIMIT`]) as it goes, so it stops by
//!   itself whether or not anybody still waits for it;
//! - a result longer than [`MAX_RESULT`] bytes is refused;
//! - requests compile and evaluate on a small bounded pool ([`pool`]).

mod ast;
mod budget;
mod eval;
pub mod pool;
mod strings;
mod value;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use budget::Budget;
pub use budget::MAX_WORK;
use value::Val;

/// Field values by name; `None` is null.
pub type Fields = BTreeMap<String, Option<String>>;

pub const MAX_SOURCE: usize = 2_000;
pub const MAX_NESTING: usize = 24;
pub const MAX_RESULT: usize = 64 * 1024;
pub const TIME_LIMIT: Duration = Duration::from_millis(250);
pub use ast::MAX_DEPTH;
const COMPREHENSIONS: [&str; 5] = ["map", "filter", "all", "exists_one", "exists"];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("the expression is longer than {MAX_SOURCE} bytes")]
    TooLong,
    #[error("the expression nests deeper than {MAX_NESTING} brackets or {MAX_DEPTH} operations")]
    TooDeep,
    #[error("the expression does not parse: {0}")]
    Syntax(String),
    #[error("`{0}` is not allowed: field transforms and filters cannot iterate")]
    Comprehension(&'static str),
    #[error("unknown variable {0:?}: only `value` and `record` can be used")]
    UnknownVariable(String),
    #[error("the expression failed: {0}")]
    Runtime(String),
    #[error("the expression took longer than {} ms", TIME_LIMIT.as_millis())]
    Timeout,
    #[error("the expression needs more than its budget of {MAX_WORK} steps and bytes")]
    TooCostly,
    #[error("the result is longer than {MAX_RESULT} bytes")]
    ResultTooLarge,
    #[error("the result is a {0}, not a string, number, boolean or null")]
    WrongType(&'static str),
    #[error("too many expressions are being evaluated; retry shortly")]
    Busy,
}

/// A compiled expression. Cheap to clone.
#[derive(Clone)]
pub struct Expression {
    source: Arc<str>,
    node: Arc<ast::Node>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

/// Bracket depth and the longest run of prefix operators, both outside string literals:
/// the parser recurses on each.
fn nesting(source: &str) -> usize {
    let (mut depth, mut max, mut run) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        run = match c {
            '!' | '-' => run + 1,
            c if c.is_whitespace() => run,
            _ => 0,
        };
        max = max.max(depth).max(run);
    }
    max
}

fn parse(source: &str) -> Result<ast::Node, TransformError> {
    let depth = u16::try_from(MAX_NESTING).unwrap_or(u16::MAX);
    let parsed = cel::parser::Parser::new()
        .max_recursion_depth(depth)
        .parse(source)
        .map_err(|e| TransformError::Syntax(e.to_string()))?;
    ast::lower(&parsed)
}

impl Expression {
    pub fn compile(source: &str) -> Result<Expression, TransformError> {
        if source.len() > MAX_SOURCE {
            return Err(TransformError::TooLong);
        }
        if nesting(source) > MAX_NESTING {
            return Err(TransformError::TooDeep);
        }
        let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
        for mac in COMPREHENSIONS {
            if compact.contains(&format!(".{mac}(")) {
                return Err(TransformError::Comprehension(mac));
            }
        }
        let node = parse(source)?;
        Ok(Expression {
            source: Arc::from(source),
            node: Arc::new(node),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn evaluate(
        &self,
        value: Option<&str>,
        record: &Fields,
        deadline: Instant,
    ) -> Result<Val, TransformError> {
        let scope = eval::Scope {
            value: value.map_or(Val::Null, Val::str),
            record,
        };
        let mut budget = Budget::until(MAX_WORK, deadline);
        eval::eval(&self.node, &scope, &mut budget)
    }

    /// Maps one field: the result as text, or `None` for null.
    pub fn apply(
        &self,
        value: Option<&str>,
        record: &Fields,
    ) -> Result<Option<String>, TransformError> {
        self.apply_until(value, record, Instant::now() + TIME_LIMIT)
    }

    /// [`Expression::apply`] with a deadline shared with other work (e.g. a whole record).
    pub fn apply_until(
        &self,
        value: Option<&str>,
        record: &Fields,
        deadline: Instant,
    ) -> Result<Option<String>, TransformError> {
        let text = match self.evaluate(value, record, deadline)? {
            Val::Null => return Ok(None),
            Val::Str(s) if s.len() > MAX_RESULT => return Err(TransformError::ResultTooLarge),
            Val::List(_) => return Err(TransformError::WrongType("list")),
            Val::Map(_) | Val::Record => return Err(TransformError::WrongType("map")),
            other => value::text(&other).unwrap_or_default(),
        };
        if text.len() > MAX_RESULT {
            return Err(TransformError::ResultTooLarge);
        }
        Ok(Some(text))
    }

    /// Evaluates a filter: whether the record syncs.
    pub fn matches(&self, record: &Fields) -> Result<bool, TransformError> {
        self.matches_until(record, Instant::now() + TIME_LIMIT)
    }

    pub fn matches_until(
        &self,
        record: &Fields,
        deadline: Instant,
    ) -> Result<bool, TransformError> {
        match self.evaluate(None, record, deadline)? {
            Val::Bool(b) => Ok(b),
            _ => Err(TransformError::WrongType(
                "non-boolean (a filter must be true or false)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Fields {
        [
            ("email", Some("Ada@Example.COM")),
            ("firstname", Some("Ada")),
            ("lastname", None),
            ("lifecyclestage", Some("customer")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
    }

    fn apply(source: &str, value: Option<&str>) -> Result<Option<String>, TransformError> {
        Expression::compile(source)?.apply(value, &record())
    }

    #[test]
    fn transforms_map_values() {
        assert_eq!(
            apply("value.lowerAscii()", Some("Ada@Example.COM")),
            Ok(Some("ada@example.com".into()))
        );
        assert_eq!(
            apply("record.firstname + ' <' + record.email + '>'", None),
            Ok(Some("Ada <Ada@Example.COM>".into()))
        );
        assert_eq!(
            apply("value == null ? 'unknown' : value", None),
            Ok(Some("unknown".into()))
        );
        assert_eq!(apply("size(value)", Some("abc")), Ok(Some("3".into())));
        assert_eq!(apply("null", Some("x")), Ok(None));
    }

    #[test]
    fn filters_decide_which_records_sync() {
        let customers =
            Expression::compile("record.lifecyclestage == 'customer'").expect("compiles");
        assert_eq!(customers.matches(&record()), Ok(true));
        let leads = Expression::compile("record.lifecyclestage == 'lead'").expect("compiles");
        assert_eq!(leads.matches(&record()), Ok(false));
        let not_bool = Expression::compile("record.email").expect("compiles");
        assert!(matches!(
            not_bool.matches(&record()),
            Err(TransformError::WrongType(_))
        ));
    }

    #[test]
    fn bad_expressions_are_refused_with_a_reason() {
        assert!(matches!(
            apply("value.", None),
            Err(TransformError::Syntax(_))
        ));
        assert_eq!(
            apply("secrets.token", None),
            Err(TransformError::UnknownVariable("secrets".into()))
        );
        assert_eq!(
            apply(&"x".repeat(MAX_SOURCE + 1), None),
            Err(TransformError::TooLong)
        );
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(apply(&deep, None), Err(TransformError::TooDeep));
        assert!(matches!(
            apply("record.missing + 'x'", None),
            Err(TransformError::Runtime(_))
        ));
        assert!(matches!(
            apply("1 / 0", None),
            Err(TransformError::Runtime(_))
        ));
        assert_eq!(
            apply("[1, 2]", None),
            Err(TransformError::WrongType("list"))
        );
        assert_eq!(
            apply("value.split('').map (c, c + c)", Some("ab")),
            Err(TransformError::Comprehension("map"))
        );
    }

    #[test]
    fn results_are_bounded_in_size() {
        let big = "x".repeat(MAX_RESULT / 2 + 1);
        assert_eq!(
            apply("value + value", Some(&big)),
            Err(TransformError::ResultTooLarge)
        );
    }

    fn sixteenfold(times: usize) -> String {
        let x = "'aaaaaaaaaaaaaaaa'";
        format!("{x}{}", format!(".replace('a', {x})").repeat(times))
    }

    #[test]
    fn growth_is_stopped_by_the_budget_before_it_allocates() {
        let started = Instant::now();
        for source in [
            format!("'a'{}", ".replace('a', 'aa')".repeat(60)),
            sixteenfold(12),
            format!("{}.split('').join('-')", sixteenfold(4)),
            format!("'%s%s'.format([{0}, {0}])", sixteenfold(6)),
            vec![sixteenfold(3); 12].join(" + "),
        ] {
            assert_eq!(
                apply(&source, Some("v")),
                Err(TransformError::TooCostly),
                "{source}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn deep_expressions_are_refused_before_they_overflow_the_stack() {
        // A small stack, as a runtime worker's: parsing and lowering must stay shallow.
        let deep = [
            format!("{}true", "!".repeat(900)),
            format!("{}1", "- ".repeat(500)),
            format!("{}1", "1 + ".repeat(450)),
            format!("value{}", ".trim()".repeat(250)),
            format!("record{}", ".a".repeat(600)),
            format!("value{}", "[0]".repeat(400)),
            format!("{}2", "true ? 1 : ".repeat(150)),
        ];
        let outcome = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                deep.iter()
                    .map(|s| Expression::compile(s).err())
                    .collect::<Vec<_>>()
            })
            .expect("spawns")
            .join()
            .expect("no stack overflow");
        for e in outcome {
            assert!(
                matches!(e, Some(TransformError::TooDeep | TransformError::Syntax(_))),
                "{e:?}"
            );
        }
    }

    #[test]
    fn the_string_library_keeps_working() {
        let cases = [
            ("value.replace('a', 'b', 1)", "bba"),
            ("value.split('a', 2).join('|')", "|ba"),
            ("value.split('').join('-')", "a-b-a"),
            ("value.substring(1, 2)", "b"),
            ("value.charAt(1)", "b"),
            (
                "string(value.indexOf('b')) + string(value.lastIndexOf('a'))",
                "12",
            ),
            ("'%s-%d-%.2f'.format([value, 3, 1.5])", "aba-3-1.50"),
            (
                "value.startsWith('ab') && value.endsWith('ba') && value.contains('b')",
                "true",
            ),
            ("value.matches('^a.a$') ? value.upperAscii() : 'no'", "ABA"),
            ("has(record.email) ? record['firstname'] : 'x'", "Ada"),
            (
                "'email' in record && 2 in [1, 2] && {'k': 1}.k == 1",
                "true",
            ),
            ("int('42') + 1", "43"),
            ("1 == 1.0 && 2u > 1", "true"),
        ];
        for (source, expected) in cases {
            assert_eq!(
                apply(source, Some("aba")),
                Ok(Some(expected.into())),
                "{source}"
            );
        }
        assert!(matches!(
            apply("9223372036854775807 + 1", None),
            Err(TransformError::Runtime(_))
        ));
    }

    proptest::proptest! {
        /// Whatever the expression (built from growing string operations), evaluation
        /// either finishes or fails with an error, within the time limit, and a result
        /// never exceeds the bound.
        #[test]
        fn any_evaluation_ends_within_its_budget(
            ops in proptest::collection::vec(0u8..6, 0..40),
            value in proptest::option::of("[a-z@.]{0,40}"),
        ) {
            let mut source = String::from("value");
            for op in ops {
                source = match op {
                    0 => format!("{source}.replace('', 'xy')"),
                    1 => format!("({source} + {source})"),
                    2 => format!("{source}.split('').join('ab')"),
                    3 => format!("{source}.upperAscii()"),
                    4 => format!("'%s%s%s'.format([{source}, 'q', {source}])"),
                    _ => format!("{source}.replace('a', 'aaaa')"),
                };
                if source.len() > MAX_SOURCE {
                    break;
                }
            }
            let started = Instant::now();
            if let Ok(expression) = Expression::compile(&source) {
                if let Ok(Some(text)) = expression.apply(value.as_deref(), &record()) {
                    proptest::prop_assert!(text.len() <= MAX_RESULT);
                }
            }
            proptest::prop_assert!(started.elapsed() < TIME_LIMIT * 4);
        }
    }
}
