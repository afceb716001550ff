//! String functions of CEL's standard library and strings extension, written so that
//! each one charges the budget for the bytes (or list slots) it is about to produce
//! before producing them. Indices are in code points, as in CEL.

use std::sync::Arc;

use super::budget::Budget;
use super::value::{runtime, text, Val};
use super::TransformError;

/// The largest compiled regular expression `matches` accepts, in bytes.
const MAX_REGEX: usize = 64 * 1024;

fn no_overload(name: &str, args: &[Val]) -> TransformError {
    let types: Vec<&str> = args.iter().map(Val::type_name).collect();
    runtime(format!(
        "no overload of `{name}` for ({})",
        types.join(", ")
    ))
}

fn string(v: String) -> Val {
    Val::Str(Arc::from(v))
}

fn count(i: &i64) -> Option<usize> {
    usize::try_from(*i).ok()
}

pub fn apply(name: &str, args: &[Val], budget: &mut Budget) -> Result<Val, TransformError> {
    use Val::{Int, List, Str};
    // Reading the receiver is work too, whatever comes out of it.
    if let Some(Str(s)) = args.first() {
        budget.charge_bytes(s.len())?;
    }
    Ok(match (name, args) {
        ("lowerAscii", [Str(s)]) => string(s.to_ascii_lowercase()),
        ("upperAscii", [Str(s)]) => string(s.to_ascii_uppercase()),
        ("trim", [Str(s)]) => Val::str(s.trim()),
        ("reverse", [Str(s)]) => string(s.chars().rev().collect()),
        ("contains", [Str(s), Str(x)]) => Val::Bool(s.contains(&**x)),
        ("startsWith", [Str(s), Str(x)]) => Val::Bool(s.starts_with(&**x)),
        ("endsWith", [Str(s), Str(x)]) => Val::Bool(s.ends_with(&**x)),
        ("matches", [Str(s), Str(p)]) => Val::Bool(regex(p)?.is_match(s)),
        ("replace", [Str(s), Str(old), Str(new)]) => replace(s, old, new, None, budget)?,
        ("replace", [Str(s), Str(old), Str(new), Int(n)]) => {
            replace(s, old, new, count(n), budget)?
        }
        ("split", [Str(s), Str(sep)]) => split(s, sep, None, budget)?,
        ("split", [Str(s), Str(sep), Int(n)]) => match n {
            0 => List(Arc::new(Vec::new())),
            n => split(s, sep, count(n), budget)?,
        },
        ("join", [List(items)]) => join(items, "", budget)?,
        ("join", [List(items), Str(sep)]) => join(items, sep, budget)?,
        ("substring", [Str(s), Int(start)]) => substring(s, *start, None)?,
        ("substring", [Str(s), Int(start), Int(end)]) => substring(s, *start, Some(*end))?,
        ("charAt", [Str(s), Int(i)]) => char_at(s, *i)?,
        ("indexOf", [Str(s), Str(x)]) => index_of(s, x, 0, false)?,
        ("indexOf", [Str(s), Str(x), Int(at)]) => index_of(s, x, *at, false)?,
        ("lastIndexOf", [Str(s), Str(x)]) => index_of(s, x, -1, true)?,
        ("lastIndexOf", [Str(s), Str(x), Int(at)]) => index_of(s, x, *at, true)?,
        ("format", [Str(f), List(items)]) => format(f, items, budget)?,
        _ => return Err(no_overload(name, args)),
    })
}

fn regex(pattern: &str) -> Result<regex::Regex, TransformError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX)
        .dfa_size_limit(MAX_REGEX)
        .build()
        .map_err(|e| runtime(format!("invalid regular expression: {e}")))
}

/// `s.replace(old, new, n)`: the size of the result is worked out and charged first.
fn replace(
    s: &str,
    old: &str,
    new: &str,
    limit: Option<usize>,
    budget: &mut Budget,
) -> Result<Val, TransformError> {
    let found = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    };
    let n = limit.map_or(found, |l| l.min(found));
    let size = (s.len() - n * old.len()).saturating_add(n.saturating_mul(new.len()));
    budget.charge_bytes(size)?;
    Ok(string(s.replacen(old, new, n)))
}

/// `s.split(sep, n)`: at most `n` pieces (all when `None`), the last holding the rest.
fn split(
    s: &str,
    sep: &str,
    limit: Option<usize>,
    budget: &mut Budget,
) -> Result<Val, TransformError> {
    let limit = limit.unwrap_or(usize::MAX);
    let pieces: Vec<&str> = if sep.is_empty() {
        let mut out: Vec<&str> = Vec::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            if out.len() + 1 >= limit {
                break;
            }
            budget.charge_slots(1)?;
            out.push(&rest[..c.len_utf8()]);
            rest = &rest[c.len_utf8()..];
        }
        if !rest.is_empty() {
            out.push(rest);
        }
        out
    } else {
        budget.charge_slots(s.matches(sep).count().saturating_add(1).min(limit))?;
        s.splitn(limit, sep).collect()
    };
    budget.charge_slots(pieces.len())?;
    Ok(Val::List(Arc::new(
        pieces.into_iter().map(Val::str).collect(),
    )))
}

fn join(items: &[Val], sep: &str, budget: &mut Budget) -> Result<Val, TransformError> {
    let mut size = sep.len().saturating_mul(items.len().saturating_sub(1));
    for item in items {
        match item {
            Val::Str(s) => size = size.saturating_add(s.len()),
            other => {
                return Err(runtime(format!(
                    "join: a list element is a {}",
                    other.type_name()
                )))
            }
        }
    }
    budget.charge_bytes(size)?;
    let mut out = String::with_capacity(size);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        if let Val::Str(s) = item {
            out.push_str(s);
        }
    }
    Ok(string(out))
}

fn out_of_range(function: &str, i: i64) -> TransformError {
    runtime(format!("{function}: index out of range: {i}"))
}

/// The byte offset of code point `i` (the end when `i` is the length).
fn byte_at(s: &str, i: i64, function: &str) -> Result<usize, TransformError> {
    let n = count(&i).ok_or_else(|| out_of_range(function, i))?;
    s.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(s.len()))
        .nth(n)
        .ok_or_else(|| out_of_range(function, i))
}

fn substring(s: &str, start: i64, end: Option<i64>) -> Result<Val, TransformError> {
    let from = byte_at(s, start, "substring")?;
    let to = match end {
        Some(e) if e < start => return Err(out_of_range("substring", e)),
        Some(e) => byte_at(s, e, "substring")?,
        None => s.len(),
    };
    Ok(Val::str(&s[from..to]))
}

fn char_at(s: &str, i: i64) -> Result<Val, TransformError> {
    let at = byte_at(s, i, "charAt")?;
    Ok(Val::str(
        s[at..]
            .chars()
            .next()
            .map_or("", |c| &s[at..at + c.len_utf8()]),
    ))
}

fn code_points(s: &str, byte: usize) -> Val {
    Val::Int(i64::try_from(s[..byte].chars().count()).unwrap_or(i64::MAX))
}

/// `indexOf` / `lastIndexOf`; `at` -1 means "from the end" for `lastIndexOf`.
fn index_of(s: &str, x: &str, at: i64, last: bool) -> Result<Val, TransformError> {
    let function = if last { "lastIndexOf" } else { "indexOf" };
    let found = if last {
        let end = if at < 0 {
            s.len()
        } else {
            byte_at(s, at, function)?
        };
        let window_end = s[end..]
            .char_indices()
            .map(|(b, _)| end + b)
            .chain(std::iter::once(s.len()))
            .nth(x.chars().count())
            .unwrap_or(s.len());
        s[..window_end].rfind(x)
    } else {
        let from = byte_at(s, at, function)?;
        s[from..].find(x).map(|b| b + from)
    };
    Ok(found.map_or(Val::Int(-1), |b| code_points(s, b)))
}

/// `'%s is %d'.format([a, b])`: `%s` (any scalar), `%d` (an integer), `%f` / `%.Nf`
/// (a number), `%%`. Each piece is charged before it is appended.
fn format(f: &str, items: &[Val], budget: &mut Budget) -> Result<Val, TransformError> {
    let mut out = String::new();
    let mut args = items.iter();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            budget.charge_bytes(c.len_utf8())?;
            out.push(c);
            continue;
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            precision = Some(
                digits
                    .parse::<usize>()
                    .ok()
                    .filter(|p| *p <= 32)
                    .ok_or_else(|| runtime("format: a precision is 0 to 32 digits"))?,
            );
        }
        let verb = chars
            .next()
            .ok_or_else(|| runtime("format: a lone `%` at the end"))?;
        if verb == '%' {
            budget.charge_bytes(1)?;
            out.push('%');
            continue;
        }
        let arg = args
            .next()
            .ok_or_else(|| runtime("format: too few arguments"))?;
        if let ('s', Val::Str(s)) = (verb, arg) {
            budget.charge_bytes(s.len())?;
            out.push_str(s);
            continue;
        }
        let piece = match (verb, arg) {
            ('s', v) => text(v).ok_or_else(|| runtime("format: %s needs a scalar"))?,
            ('d', Val::Int(_) | Val::UInt(_)) => text(arg).unwrap_or_default(),
            ('f', Val::Double(d)) => format!("{d:.*}", precision.unwrap_or(6)),
            #[allow(clippy::cast_precision_loss)]
            ('f', Val::Int(i)) => format!("{:.*}", precision.unwrap_or(6), *i as f64),
            _ => {
                return Err(runtime(format!(
                    "format: %{verb} cannot format a {}",
                    arg.type_name()
                )))
            }
        };
        budget.charge_bytes(piece.len())?;
        out.push_str(&piece);
    }
    Ok(string(out))
}
