//! A tree-walking evaluator for the checked expression. It exists because the CEL
//! interpreter cannot be interrupted or limited while it runs: here every node visited
//! and every byte produced is charged to a [`Budget`] first, so a hostile expression
//! stops with an error after bounded work, memory and time.

use std::cmp::Ordering;
use std::sync::Arc;

use super::ast::Node;
use super::budget::Budget;
use super::strings;
use super::value::{runtime, text, Val};
use super::{Fields, TransformError};

/// What the variables stand for during one evaluation.
pub struct Scope<'a> {
    pub value: Val,
    pub record: &'a Fields,
}

fn no_overload(name: &str, args: &[Val]) -> TransformError {
    let types: Vec<&str> = args.iter().map(Val::type_name).collect();
    runtime(format!(
        "no overload of `{name}` for ({})",
        types.join(", ")
    ))
}

/// Errors that end the evaluation whatever the operators around them would do.
fn is_limit(e: &TransformError) -> bool {
    matches!(e, TransformError::TooCostly | TransformError::Timeout)
}

pub fn eval(node: &Node, scope: &Scope<'_>, budget: &mut Budget) -> Result<Val, TransformError> {
    budget.charge(1)?;
    match node {
        Node::Lit(v) => Ok(v.clone()),
        Node::Value => Ok(scope.value.clone()),
        Node::Record => Ok(Val::Record),
        Node::Select {
            operand,
            field,
            test,
        } => {
            let operand = eval(operand, scope, budget)?;
            select(&operand, field, *test, scope, budget)
        }
        Node::List(items) => {
            budget.charge_slots(items.len())?;
            let items = items
                .iter()
                .map(|n| eval(n, scope, budget))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Val::List(Arc::new(items)))
        }
        Node::Map(entries) => map_literal(entries, scope, budget),
        Node::Call { name, target, args } => call(name, target.as_deref(), args, scope, budget),
    }
}

fn map_literal(
    entries: &[(Node, Node)],
    scope: &Scope<'_>,
    budget: &mut Budget,
) -> Result<Val, TransformError> {
    budget.charge_slots(entries.len().saturating_mul(2))?;
    let mut out: Vec<(Val, Val)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let key = eval(k, scope, budget)?;
        if !matches!(key, Val::Str(_) | Val::Int(_) | Val::UInt(_) | Val::Bool(_)) {
            return Err(runtime(format!(
                "a {} cannot be a map key",
                key.type_name()
            )));
        }
        budget.charge_slots(out.len())?;
        if out.iter().any(|(existing, _)| equal(existing, &key)) {
            return Err(runtime("a map literal repeats a key"));
        }
        let value = eval(v, scope, budget)?;
        out.push((key, value));
    }
    Ok(Val::Map(Arc::new(out)))
}

/// A CRM field of the record: a string, or null.
fn field(
    name: &str,
    scope: &Scope<'_>,
    budget: &mut Budget,
) -> Option<Result<Val, TransformError>> {
    let value = scope.record.get(name)?;
    Some(match value {
        None => Ok(Val::Null),
        Some(text) => budget.charge_bytes(text.len()).map(|()| Val::str(text)),
    })
}

fn select(
    operand: &Val,
    name: &str,
    test: bool,
    scope: &Scope<'_>,
    budget: &mut Budget,
) -> Result<Val, TransformError> {
    match operand {
        Val::Record if test => Ok(Val::Bool(scope.record.contains_key(name))),
        Val::Record => field(name, scope, budget)
            .unwrap_or_else(|| Err(runtime(format!("no such key: {name}")))),
        Val::Map(entries) => {
            budget.charge_slots(entries.len())?;
            let found = entries
                .iter()
                .find(|(k, _)| matches!(k, Val::Str(s) if &**s == name));
            match (found, test) {
                (found, true) => Ok(Val::Bool(found.is_some())),
                (Some((_, v)), false) => Ok(v.clone()),
                (None, false) => Err(runtime(format!("no such key: {name}"))),
            }
        }
        other => Err(runtime(format!(
            "a {} has no field `{name}`",
            other.type_name()
        ))),
    }
}

fn call(
    name: &'static str,
    target: Option<&Node>,
    args: &[Node],
    scope: &Scope<'_>,
    budget: &mut Budget,
) -> Result<Val, TransformError> {
    // The logical operators decide which operands are evaluated at all.
    match (name, args) {
        ("_&&_", [a, b]) => return logic(false, a, b, scope, budget),
        ("_||_", [a, b]) => return logic(true, a, b, scope, budget),
        ("_?_:_", [c, a, b]) => {
            return match eval(c, scope, budget)? {
                Val::Bool(true) => eval(a, scope, budget),
                Val::Bool(false) => eval(b, scope, budget),
                other => Err(no_overload("_?_:_", &[other])),
            }
        }
        _ => {}
    }
    let mut values = Vec::with_capacity(args.len() + 1);
    if let Some(t) = target {
        values.push(eval(t, scope, budget)?);
    }
    for a in args {
        values.push(eval(a, scope, budget)?);
    }
    apply(name, &values, scope, budget)
}

/// `&&` (`short` false) and `||` (`short` true), commutative over errors as CEL is: an
/// error on one side is forgiven when the other side decides the result.
fn logic(
    short: bool,
    a: &Node,
    b: &Node,
    scope: &Scope<'_>,
    budget: &mut Budget,
) -> Result<Val, TransformError> {
    let name = if short { "_||_" } else { "_&&_" };
    let left = match eval(a, scope, budget) {
        Ok(Val::Bool(v)) if v == short => return Ok(Val::Bool(short)),
        Ok(Val::Bool(_)) => None,
        Ok(other) => Some(no_overload(name, &[other])),
        Err(e) if is_limit(&e) => return Err(e),
        Err(e) => Some(e),
    };
    match (eval(b, scope, budget)?, left) {
        (Val::Bool(v), _) if v == short => Ok(Val::Bool(short)),
        (_, Some(e)) => Err(e),
        (Val::Bool(v), None) => Ok(Val::Bool(v)),
        (other, None) => Err(no_overload(name, &[other])),
    }
}

fn apply(
    name: &str,
    args: &[Val],
    scope: &Scope<'_>,
    budget: &mut Budget,
) -> Result<Val, TransformError> {
    let result = match (name, args) {
        ("_==_", [a, b]) => Val::Bool(equal(a, b)),
        ("_!=_", [a, b]) => Val::Bool(!equal(a, b)),
        ("_<_" | "_<=_" | "_>_" | "_>=_", [a, b]) => {
            let order = compare(a, b).ok_or_else(|| no_overload(name, args))?;
            Val::Bool(match name {
                "_<_" => order == Ordering::Less,
                "_<=_" => order != Ordering::Greater,
                "_>_" => order == Ordering::Greater,
                _ => order != Ordering::Less,
            })
        }
        ("!_", [Val::Bool(b)]) => Val::Bool(!b),
        ("-_", [Val::Int(i)]) => {
            Val::Int(i.checked_neg().ok_or_else(|| runtime("integer overflow"))?)
        }
        ("-_", [Val::Double(d)]) => Val::Double(-d),
        ("_+_", [a, b]) => add(a, b, budget)?,
        ("_-_" | "_*_" | "_/_" | "_%_", [a, b]) => arithmetic(name, a, b)?,
        ("_[_]", [container, key]) => index(container, key, scope, budget)?,
        ("@in", [item, container]) => Val::Bool(contains(container, item, scope, budget)?),
        ("dyn", [v]) => v.clone(),
        ("size", [v]) => size(v, scope)?,
        ("string" | "int" | "uint" | "double" | "bool", [v]) => convert(name, v, budget)?,
        _ => return strings::apply(name, args, budget),
    };
    Ok(result)
}

pub fn equal(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (
            Val::Int(_) | Val::UInt(_) | Val::Double(_),
            Val::Int(_) | Val::UInt(_) | Val::Double(_),
        ) => compare(a, b) == Some(Ordering::Equal),
        (Val::List(x), Val::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| equal(a, b))
        }
        (Val::Map(x), Val::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| equal(k, k2) && equal(v, v2)))
        }
        _ => a == b,
    }
}

fn compare(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::UInt(x), Val::UInt(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::UInt(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Val::UInt(x), Val::Int(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => as_f64(a)?.partial_cmp(&as_f64(b)?),
    }
}

#[allow(clippy::cast_precision_loss)]
fn as_f64(v: &Val) -> Option<f64> {
    match v {
        Val::Int(i) => Some(*i as f64),
        Val::UInt(u) => Some(*u as f64),
        Val::Double(d) => Some(*d),
        _ => None,
    }
}

fn add(a: &Val, b: &Val, budget: &mut Budget) -> Result<Val, TransformError> {
    Ok(match (a, b) {
        (Val::Str(x), Val::Str(y)) => {
            budget.charge_bytes(x.len().saturating_add(y.len()))?;
            let mut out = String::with_capacity(x.len() + y.len());
            out.push_str(x);
            out.push_str(y);
            Val::Str(Arc::from(out))
        }
        (Val::List(x), Val::List(y)) => {
            budget.charge_slots(x.len().saturating_add(y.len()))?;
            Val::List(Arc::new(x.iter().chain(y.iter()).cloned().collect()))
        }
        _ => arithmetic("_+_", a, b)?,
    })
}

fn overflow() -> TransformError {
    runtime("integer overflow or division by zero")
}

fn arithmetic(name: &str, a: &Val, b: &Val) -> Result<Val, TransformError> {
    Ok(match (a, b) {
        (Val::Int(x), Val::Int(y)) => Val::Int(
            match name {
                "_+_" => x.checked_add(*y),
                "_-_" => x.checked_sub(*y),
                "_*_" => x.checked_mul(*y),
                "_/_" => x.checked_div(*y),
                _ => x.checked_rem(*y),
            }
            .ok_or_else(overflow)?,
        ),
        (Val::UInt(x), Val::UInt(y)) => Val::UInt(
            match name {
                "_+_" => x.checked_add(*y),
                "_-_" => x.checked_sub(*y),
                "_*_" => x.checked_mul(*y),
                "_/_" => x.checked_div(*y),
                _ => x.checked_rem(*y),
            }
            .ok_or_else(overflow)?,
        ),
        (Val::Double(x), Val::Double(y)) => Val::Double(match name {
            "_+_" => x + y,
            "_-_" => x - y,
            "_*_" => x * y,
            "_/_" => x / y,
            _ => return Err(no_overload(name, &[a.clone(), b.clone()])),
        }),
        _ => return Err(no_overload(name, &[a.clone(), b.clone()])),
    })
}

fn int_index(key: &Val, len: usize) -> Result<usize, TransformError> {
    let i = match key {
        Val::Int(i) => usize::try_from(*i).ok(),
        Val::UInt(u) => usize::try_from(*u).ok(),
        other => {
            return Err(runtime(format!(
                "a list index cannot be a {}",
                other.type_name()
            )))
        }
    };
    i.filter(|i| *i < len)
        .ok_or_else(|| runtime("list index out of range"))
}

fn index(
    container: &Val,
    key: &Val,
    scope: &Scope<'_>,
    budget: &mut Budget,
) -> Result<Val, TransformError> {
    match (container, key) {
        (Val::List(items), _) => Ok(items[int_index(key, items.len())?].clone()),
        (Val::Record, Val::Str(name)) => field(name, scope, budget)
            .unwrap_or_else(|| Err(runtime(format!("no such key: {name}")))),
        (Val::Map(entries), _) => {
            budget.charge_slots(entries.len())?;
            entries
                .iter()
                .find(|(k, _)| equal(k, key))
                .map(|(_, v)| v.clone())
                .ok_or_else(|| runtime("no such key"))
        }
        _ => Err(no_overload("_[_]", &[container.clone(), key.clone()])),
    }
}

fn contains(
    container: &Val,
    item: &Val,
    scope: &Scope<'_>,
    budget: &mut Budget,
) -> Result<bool, TransformError> {
    match (container, item) {
        (Val::List(items), _) => {
            budget.charge_slots(items.len())?;
            Ok(items.iter().any(|v| equal(v, item)))
        }
        (Val::Map(entries), _) => {
            budget.charge_slots(entries.len())?;
            Ok(entries.iter().any(|(k, _)| equal(k, item)))
        }
        (Val::Record, Val::Str(name)) => Ok(scope.record.contains_key(&**name)),
        _ => Err(no_overload("@in", &[item.clone(), container.clone()])),
    }
}

fn size(v: &Val, scope: &Scope<'_>) -> Result<Val, TransformError> {
    let n = match v {
        Val::Str(s) => s.chars().count(),
        Val::List(items) => items.len(),
        Val::Map(entries) => entries.len(),
        Val::Record => scope.record.len(),
        other => return Err(no_overload("size", std::slice::from_ref(other))),
    };
    Ok(Val::Int(i64::try_from(n).unwrap_or(i64::MAX)))
}

#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn convert(name: &str, v: &Val, budget: &mut Budget) -> Result<Val, TransformError> {
    let bad = || no_overload(name, std::slice::from_ref(v));
    let parse_err = |_| runtime(format!("cannot convert to {name}"));
    Ok(match (name, v) {
        ("string", Val::Str(_)) => v.clone(),
        ("string", _) if !matches!(v, Val::Null) => {
            let t = text(v).ok_or_else(bad)?;
            budget.charge_bytes(t.len())?;
            Val::str(&t)
        }
        ("int", Val::Int(_))
        | ("uint", Val::UInt(_))
        | ("double", Val::Double(_))
        | ("bool", Val::Bool(_)) => v.clone(),
        ("int", Val::Str(s)) => Val::Int(s.trim().parse().map_err(parse_err)?),
        ("int", Val::UInt(u)) => Val::Int(i64::try_from(*u).map_err(|_| overflow())?),
        ("int", Val::Double(d)) if d.is_finite() && d.abs() < 9.2e18 => Val::Int(*d as i64),
        ("uint", Val::Str(s)) => Val::UInt(s.trim().parse().map_err(parse_err)?),
        ("uint", Val::Int(i)) => Val::UInt(u64::try_from(*i).map_err(|_| overflow())?),
        ("uint", Val::Double(d)) if d.is_finite() && *d >= 0.0 && *d < 1.8e19 => {
            Val::UInt(*d as u64)
        }
        ("double", Val::Str(s)) => Val::Double(
            s.trim()
                .parse()
                .map_err(|_| runtime("cannot convert to double"))?,
        ),
        ("double", Val::Int(i)) => Val::Double(*i as f64),
        ("double", Val::UInt(u)) => Val::Double(*u as f64),
        ("bool", Val::Str(s)) => match &**s {
            "true" | "True" | "TRUE" | "t" | "1" => Val::Bool(true),
            "false" | "False" | "FALSE" | "f" | "0" => Val::Bool(false),
            _ => return Err(runtime("cannot convert to bool")),
        },
        _ => return Err(bad()),
    })
}
