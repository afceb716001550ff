//! Our own, `Send` form of a parsed expression, checked once when it is compiled: only
//! the variables `value` and `record`, no comprehension macro, only functions the
//! evaluator implements, and at most [`MAX_DEPTH`] levels deep (the evaluator recurses
//! on depth, so it is bounded here rather than discovered as a stack overflow).

use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::IdedExpr;

use super::value::Val;
use super::TransformError;

/// How deep the expression tree may be once parsed.
pub const MAX_DEPTH: usize = 64;

/// Functions and operators the evaluator implements (see `eval.rs` and `strings.rs`).
const FUNCTIONS: &[&str] = &[
    "_+_",
    "_-_",
    "_*_",
    "_/_",
    "_%_",
    "_==_",
    "_!=_",
    "_<_",
    "_<=_",
    "_>_",
    "_>=_",
    "!_",
    "-_",
    "_&&_",
    "_||_",
    "_?_:_",
    "_[_]",
    "@in",
    "size",
    "string",
    "int",
    "uint",
    "double",
    "bool",
    "dyn",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "lowerAscii",
    "upperAscii",
    "trim",
    "reverse",
    "replace",
    "split",
    "join",
    "substring",
    "charAt",
    "indexOf",
    "lastIndexOf",
    "format",
];

#[derive(Clone, Debug)]
pub enum Node {
    Lit(Val),
    Value,
    Record,
    Select {
        operand: Box<Node>,
        field: Arc<str>,
        /// `has(operand.field)`: whether the field is present.
        test: bool,
    },
    Call {
        name: &'static str,
        target: Option<Box<Node>>,
        args: Vec<Node>,
    },
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

fn unsupported(what: &str) -> TransformError {
    TransformError::Syntax(format!("{what} is not supported"))
}

fn literal(value: &LiteralValue) -> Result<Val, TransformError> {
    Ok(match value {
        LiteralValue::Null => Val::Null,
        LiteralValue::Boolean(b) => Val::Bool(*b.inner()),
        LiteralValue::Int(i) => Val::Int(*i.inner()),
        LiteralValue::UInt(u) => Val::UInt(*u.inner()),
        LiteralValue::Double(d) => Val::Double(*d.inner()),
        LiteralValue::String(s) => Val::Str(Arc::from(s.inner())),
        LiteralValue::Bytes(_) => return Err(unsupported("a bytes literal")),
    })
}

fn function(name: &str) -> Result<&'static str, TransformError> {
    FUNCTIONS
        .iter()
        .find(|f| **f == name)
        .copied()
        .ok_or_else(|| TransformError::Syntax(format!("unknown function `{name}`")))
}

/// Converts and checks the parsed expression.
pub fn lower(expr: &IdedExpr) -> Result<Node, TransformError> {
    lower_at(expr, 1)
}

fn lower_all(exprs: &[IdedExpr], depth: usize) -> Result<Vec<Node>, TransformError> {
    exprs.iter().map(|e| lower_at(e, depth + 1)).collect()
}

fn lower_at(expr: &IdedExpr, depth: usize) -> Result<Node, TransformError> {
    if depth > MAX_DEPTH {
        return Err(TransformError::TooDeep);
    }
    Ok(match &expr.expr {
        Expr::Literal(value) => Node::Lit(literal(value)?),
        Expr::Ident(name) => match name.as_str() {
            "value" => Node::Value,
            "record" => Node::Record,
            other => return Err(TransformError::UnknownVariable(other.to_owned())),
        },
        Expr::Select(select) => Node::Select {
            operand: Box::new(lower_at(&select.operand, depth + 1)?),
            field: Arc::from(select.field.as_str()),
            test: select.test,
        },
        Expr::Call(call) => Node::Call {
            name: function(&call.func_name)?,
            target: match &call.target {
                Some(t) => Some(Box::new(lower_at(t, depth + 1)?)),
                None => None,
            },
            args: lower_all(&call.args, depth)?,
        },
        Expr::List(list) if list.optional_indices.is_empty() => {
            Node::List(lower_all(&list.elements, depth)?)
        }
        Expr::Map(map) => Node::Map(
            map.entries
                .iter()
                .map(|entry| match &entry.expr {
                    EntryExpr::MapEntry(e) if !e.optional => {
                        Ok((lower_at(&e.key, depth + 1)?, lower_at(&e.value, depth + 1)?))
                    }
                    _ => Err(unsupported("an optional or struct entry")),
                })
                .collect::<Result<_, _>>()?,
        ),
        Expr::Comprehension(_) => {
            return Err(TransformError::Comprehension("map, filter, all or exists"))
        }
        Expr::List(_) => return Err(unsupported("an optional list element")),
        Expr::Struct(_) => return Err(unsupported("a message literal")),
        Expr::Unspecified => return Err(unsupported("an empty expression")),
    })
}
