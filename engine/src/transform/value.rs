//! Values an expression computes with. Strings and lists are reference-counted so that
//! passing them around costs nothing; producing one is charged to the budget.

use std::sync::Arc;

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
