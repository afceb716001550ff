//! A read as data: its SQL and its arguments. The list reads build one, run it, and hand
//! the same one to [`crate::plans`], so the query-plan check looks at the very text the
//! pages run.

use sqlx::any::AnyArguments;
use sqlx::Any;

/// One argument of a [`Statement`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    /// Text or SQL NULL.
    MaybeText(Option<String>),
    Int(i64),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Text(s.to_owned())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Text(s)
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Self {
        Arg::Int(n)
    }
}

/// SQL with `$n` placeholders and the arguments they take, in order.
#[derive(Clone, Debug, Default)]
pub struct Statement {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Statement {
    pub fn new(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Add an argument; its placeholder is `$` and the number returned.
    pub fn arg(&mut self, arg: impl Into<Arg>) -> usize {
        self.args.push(arg.into());
        self.args.len()
    }

    /// The statement with its arguments bound, ready to run.
    pub fn query(&self) -> sqlx::query::Query<'_, Any, AnyArguments<'_>> {
        self.bind_to(&self.sql)
    }

    /// Other SQL (the statement's, wrapped) with this statement's arguments bound.
    pub(crate) fn bind_to<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, Any, AnyArguments<'q>> {
        self.args.iter().fold(sqlx::query(sql), |q, arg| match arg {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::MaybeText(s) => q.bind(s.as_deref()),
            Arg::Int(n) => q.bind(*n),
        })
    }
}
