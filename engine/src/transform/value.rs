//! Values an expression computes with. Strings and lists are reference-counted so that
//! passing them around costs nothing; producing one is charged to the budget.

use std::sync::Arc;

use super::TransformError;

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Arc<str>),
    List(Arc<Vec<Val>>),
    /// A map literal, as (key, value) pairs in source order.
    Map(Arc<Vec<(Val, Val)>>),
    /// The `record` variable: the CRM fields, read in place.
    Record,
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::UInt(_) => "uint",
            Val::Double(_) => "double",
            Val::Str(_) => "string",
            Val::List(_) => "list",
            Val::Map(_) | Val::Record => "map",
        }
    }

    pub fn str(text: &str) -> Val {
        Val::Str(Arc::from(text))
    }
}

/// A runtime failure of an expression, with its message.
pub fn runtime(message: impl Into<String>) -> TransformError {
    TransformError::Runtime(message.into())
}

/// The text of a scalar, as `string(v)` and `format('%s')` give it.
pub fn text(v: &Val) -> Option<String> {
    Some(match v {
        Val::Null => "null".into(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::UInt(u) => u.to_string(),
        Val::Double(d) => d.to_string(),
        Val::Str(s) => s.to_string(),
        _ => return None,
    })
}
