//! A realistic subset of SOQL: `SELECT f, .. FROM S [WHERE f op lit [AND ..]]
//! [ORDER BY f [ASC|DESC], ..] [LIMIT n]`. Keywords are case-insensitive.

use std::cmp::Ordering;

use super::state::parse_time;

#[derive(Debug, PartialEq)]
pub struct Query {
    pub fields: Vec<String>,
    pub object: String,
    pub conditions: Vec<Condition>,
    /// Field and whether ascending.
    pub order: Vec<(String, bool)>,
    pub limit: Option<usize>,
}

#[derive(Debug, PartialEq)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    pub value: Literal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, PartialEq)]
pub enum Literal {
    Text(String),
    /// A datetime literal, in epoch milliseconds.
    Time(i64),
    Number(f64),
    Bool(bool),
    Null,
}

impl Op {
    /// Whether `ordering` (record value vs. literal) satisfies the operator.
    pub fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Comma,
    Op(Op),
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == ',' {
            chars.next();
            tokens.push(Token::Comma);
        } else if c == '\'' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some('\\') => text.extend(chars.next()),
                    Some('\'') => break,
                    Some(other) => text.push(other),
                    None => return Err("unterminated string literal".into()),
                }
            }
            tokens.push(Token::Text(text));
        } else if matches!(c, '=' | '!' | '<' | '>') {
            chars.next();
            let next = chars.peek().copied();
            let op = match (c, next) {
                ('=', _) => Op::Eq,
                ('!', Some('=')) => Op::Ne,
                ('<', Some('>')) => Op::Ne,
                ('<', Some('=')) => Op::Le,
                ('>', Some('=')) => Op::Ge,
                ('<', _) => Op::Lt,
                ('>', _) => Op::Gt,
                _ => return Err(format!("unexpected '{c}'")),
            };
            if matches!(op, Op::Ne | Op::Le | Op::Ge) {
                chars.next();
            }
            tokens.push(Token::Op(op));
        } else if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '+') {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '+') {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Word(word));
        } else {
            return Err(format!("unexpected token: '{c}'"));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), String> {
        if self.peek_keyword(keyword) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expecting keyword '{keyword}'"))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.tokens.get(self.at) {
            Some(Token::Word(w)) if is_ident(w) => {
                self.at += 1;
                Ok(w.clone())
            }
            Some(other) => Err(format!("unexpected token: {other:?}")),
            None => Err("unexpected end of query".into()),
        }
    }

    fn comma(&mut self) -> bool {
        let found = self.tokens.get(self.at) == Some(&Token::Comma);
        if found {
            self.at += 1;
        }
        found
    }

    fn literal(&mut self) -> Result<Literal, String> {
        let token = self.tokens.get(self.at).ok_or("unexpected end of query")?;
        self.at += 1;
        match token {
            Token::Text(t) => Ok(Literal::Text(t.clone())),
            Token::Word(w) if w.eq_ignore_ascii_case("null") => Ok(Literal::Null),
            Token::Word(w) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Token::Word(w) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            Token::Word(w) if w.contains('T') && w.starts_with(|c: char| c.is_ascii_digit()) => {
                parse_time(w)
                    .map(Literal::Time)
                    .ok_or_else(|| format!("invalid date time: {w}"))
            }
            Token::Word(w) => w
                .parse()
                .map(Literal::Number)
                .map_err(|_| format!("unexpected token: {w}")),
            other => Err(format!("unexpected token: {other:?}")),
        }
    }

    fn condition(&mut self) -> Result<Condition, String> {
        let field = self.ident()?;
        let op = match self.tokens.get(self.at) {
            Some(Token::Op(op)) => *op,
            _ => return Err(format!("expecting an operator after {field}")),
        };
        self.at += 1;
        let value = self.literal()?;
        Ok(Condition { field, op, value })
    }
}

fn is_ident(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn parse(input: &str) -> Result<Query, String> {
    let mut p = Parser {
        tokens: tokenize(input)?,
        at: 0,
    };
    p.keyword("SELECT")?;
    let mut fields = vec![p.ident()?];
    while p.comma() {
        fields.push(p.ident()?);
    }
    p.keyword("FROM")?;
    let object = p.ident()?;
    let mut conditions = Vec::new();
    if p.peek_keyword("WHERE") {
        p.at += 1;
        conditions.push(p.condition()?);
        while p.peek_keyword("AND") {
            p.at += 1;
            conditions.push(p.condition()?);
        }
    }
    let mut order = Vec::new();
    if p.peek_keyword("ORDER") {
        p.at += 1;
        p.keyword("BY")?;
        loop {
            let field = p.ident()?;
            let ascending = if p.peek_keyword("DESC") {
                p.at += 1;
                false
            } else {
                if p.peek_keyword("ASC") {
                    p.at += 1;
                }
                true
            };
            order.push((field, ascending));
            if !p.comma() {
                break;
            }
        }
    }
    let mut limit = None;
    if p.peek_keyword("LIMIT") {
        p.at += 1;
        match p.literal()? {
            Literal::Number(n) if n >= 0.0 && n.fract() == 0.0 => limit = Some(n as usize),
            _ => return Err("LIMIT must be a non-negative integer".into()),
        }
    }
    if let Some(extra) = p.tokens.get(p.at) {
        return Err(format!("unexpected token: {extra:?}"));
    }
    Ok(Query {
        fields,
        object,
        conditions,
        order,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_incremental_query() {
        let q = parse(
            "SELECT Id, Name FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00Z \
             AND Name != 'O\\'Brien' ORDER BY SystemModstamp ASC, Id LIMIT 10",
        )
        .expect("parses");
        assert_eq!(q.fields, ["Id", "Name"]);
        assert_eq!(q.object, "Account");
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[0].op, Op::Ge);
        assert_eq!(q.conditions[0].value, Literal::Time(1_704_067_200_000));
        assert_eq!(q.conditions[1].value, Literal::Text("O'Brien".into()));
        assert_eq!(
            q.order,
            [("SystemModstamp".into(), true), ("Id".into(), true)]
        );
        assert_eq!(q.limit, Some(10));
    }

    #[test]
    fn operators_need_no_spaces() {
        let q = parse("select Id from Contact where SystemModstamp>2024-01-01T00:00:00.000+0000")
            .expect("parses");
        assert_eq!(q.conditions[0].op, Op::Gt);
    }

    #[test]
    fn rejects_malformed_queries() {
        for bad in [
            "",
            "SELECT FROM Account",
            "SELECT Id Account",
            "SELECT Id FROM Account WHERE",
            "SELECT Id FROM Account LIMIT x",
            "SELECT Id FROM Account ORDER Id",
            "SELECT Id FROM Account trailing",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
