//! Field transforms and sync filters written in CEL (Common Expression Language).
//!
//! CEL has no loops, IO or side effects, which makes it a safe language for users'
//! expressions; syncledger still bounds what one expression may cost:
//! - the source is at most [`MAX_SOURCE`] bytes and [`MAX_NESTING`] brackets deep
//!   (the parser recurses on nesting);
//! - it may only read the variables `value` (the field being mapped, a string or null)
//!   and `record` (every CRM field of the record, by name);
//! - comprehension macros (`map`, `filter`, `all`, `exists`, `exists_one`) are refused:
//!   without them an evaluation costs at most the source length times the input size;
//! - each evaluation runs on a worker thread and is abandoned after [`TIME_LIMIT`];
//! - a result longer than [`MAX_RESULT`] bytes is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use cel::{extensions, Context, Env, Program, Value};

/// Field values by name; `None` is null.
pub type Fields = BTreeMap<String, Option<String>>;

pub const MAX_SOURCE: usize = 2_000;
pub const MAX_NESTING: usize = 24;
pub const MAX_RESULT: usize = 64 * 1024;
pub const TIME_LIMIT: Duration = Duration::from_millis(250);
const VARIABLES: [&str; 2] = ["value", "record"];
const COMPREHENSIONS: [&str; 5] = ["map", "filter", "all", "exists_one", "exists"];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("the expression is longer than {MAX_SOURCE} bytes")]
    TooLong,
    #[error("the expression nests brackets deeper than {MAX_NESTING}")]
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
    #[error("the result is longer than {MAX_RESULT} bytes")]
    ResultTooLarge,
    #[error("the result is a {0}, not a string, number, boolean or null")]
    WrongType(&'static str),
}

/// The standard library plus the string extension (`lowerAscii`, `trim`, `replace`,
/// `split`, ...), shared by every expression.
fn env() -> Result<Arc<Env>, TransformError> {
    static ENV: OnceLock<Result<Arc<Env>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        env.add_extension(extensions::strings)
            .map_err(|e| format!("{e:?}"))?;
        Ok(Arc::new(env))
    })
    .clone()
    .map_err(TransformError::Runtime)
}

/// A compiled expression. Cheap to clone.
#[derive(Clone)]
pub struct Expression {
    source: Arc<str>,
    program: Arc<Program>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

fn nesting(source: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Runs `work` on its own thread, giving up after the time limit. A panic inside the
/// interpreter becomes an error rather than taking the caller down.
fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TransformError> + Send + 'static,
) -> Result<T, TransformError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("cel".into())
        .stack_size(8 * 1024 * 1024)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(TransformError::Runtime("the interpreter failed".into())));
            // The receiver may have given up already.
            let _ = tx.send(outcome);
        })
        .map_err(|e| TransformError::Runtime(format!("cannot start evaluation: {e}")))?;
    rx.recv_timeout(TIME_LIMIT)
        .unwrap_or(Err(TransformError::Timeout))
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
        let owned = source.to_owned();
        let env = env()?;
        let program = bounded(move || {
            let program = env
                .compile(&owned)
                .map_err(|e| TransformError::Syntax(e.to_string()))?;
            let unknown = program
                .references()
                .variables()
                .into_iter()
                .find(|v| !VARIABLES.contains(v))
                .map(str::to_owned);
            match unknown {
                Some(name) => Err(TransformError::UnknownVariable(name)),
                None => Ok(program),
            }
        })?;
        Ok(Expression {
            source: Arc::from(source),
            program: Arc::new(program),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn evaluate(&self, value: Option<&str>, record: &Fields) -> Result<Value, TransformError> {
        let program = self.program.clone();
        let env = env()?;
        let value = value.map_or(Value::Null, |v| Value::from(v.to_owned()));
        let record: HashMap<String, Value> = record
            .iter()
            .map(|(k, v)| {
                let v = v.clone().map_or(Value::Null, Value::from);
                (k.clone(), v)
            })
            .collect();
        bounded(move || {
            let mut context = Context::with_env(env);
            context.add_variable_from_value("value", value);
            context.add_variable_from_value("record", record);
            program
                .execute(&context)
                .map_err(|e| TransformError::Runtime(e.to_string()))
        })
    }

    /// Maps one field: the result as text, or `None` for null.
    pub fn apply(
        &self,
        value: Option<&str>,
        record: &Fields,
    ) -> Result<Option<String>, TransformError> {
        let text = match self.evaluate(value, record)? {
            Value::Null => return Ok(None),
            Value::String(s) => s.as_ref().clone(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::List(_) => return Err(TransformError::WrongType("list")),
            Value::Map(_) => return Err(TransformError::WrongType("map")),
            _ => return Err(TransformError::WrongType("value of another type")),
        };
        if text.len() > MAX_RESULT {
            return Err(TransformError::ResultTooLarge);
        }
        Ok(Some(text))
    }

    /// Evaluates a filter: whether the record syncs.
    pub fn matches(&self, record: &Fields) -> Result<bool, TransformError> {
        match self.evaluate(None, record)? {
            Value::Bool(b) => Ok(b),
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
}
