//! The `$filter` subset Exact clients use: `eq ne gt ge lt le`, `and`/`or`/`not`, parentheses, `trim()`/`tolower()`/
//! `toupper()`, `startswith`/`endswith`/`substringof`, and literals `'text'` (`''` escapes a quote), `guid'..'`,
//! integers, decimals, `true`/`false`, `datetime'..'`, `null`. Fields and operand types are checked against the
//! entity type, with Exact's (WCF's) messages. String comparisons ignore case (Exact's collation) but not padding.

use std::cmp::Ordering;

use uuid::Uuid;

use super::{FieldDef, Ty, Val, field};
use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Guid(String),
    DateTime(String),
    Int(i64, bool),
    Dec(f64),
    LParen,
    RParen,
    Comma,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Lt => "lt",
            Op::Le => "le",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StrFn {
    Trim,
    ToLower,
    ToUpper,
}

#[derive(Clone, Debug)]
pub(crate) enum Operand {
    Field(String),
    Func(StrFn, Box<Operand>),
    Lit(Val, Option<Ty>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BoolFn {
    StartsWith,
    EndsWith,
    SubstringOf,
}

/// A parsed, type-checked filter.
#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Op, Operand, Operand),
    Call(BoolFn, Operand, Operand),
    BoolField(String),
    Const(bool),
}

fn syntax(pos: usize) -> ApiError {
    ApiError::bad_request(format!("Syntax error at position {pos}."))
}

fn lex(src: &str) -> Result<Vec<Token>, ApiError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let quoted = |start: usize| -> Result<(String, usize), ApiError> {
        // `start` is the opening quote; returns the content and the index after the closing quote.
        let mut s = String::new();
        let mut j = start + 1;
        loop {
            match chars.get(j) {
                None => {
                    return Err(ApiError::bad_request(format!(
                        "There is an unterminated string literal at position {start} in '{src}'."
                    )));
                }
                Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                    s.push('\'');
                    j += 2;
                }
                Some('\'') => return Ok((s, j + 1)),
                Some(c) => {
                    s.push(*c);
                    j += 1;
                }
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let pos = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '\'' => {
                let (s, next) = quoted(i)?;
                i = next;
                Tok::Str(s)
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let mut j = i + 1;
                while chars.get(j).is_some_and(char::is_ascii_digit) {
                    j += 1;
                }
                let mut is_dec = false;
                if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    is_dec = true;
                    j += 1;
                    while chars.get(j).is_some_and(char::is_ascii_digit) {
                        j += 1;
                    }
                }
                let text: String = chars[i..j].iter().collect();
                let suffix = chars.get(j).map(|c| c.to_ascii_lowercase());
                let mut long = false;
                match suffix {
                    Some('l') if !is_dec => {
                        long = true;
                        j += 1;
                    }
                    Some('m' | 'd' | 'f') => {
                        is_dec = true;
                        j += 1;
                    }
                    _ => {}
                }
                i = j;
                if is_dec {
                    Tok::Dec(text.parse().map_err(|_| syntax(pos))?)
                } else {
                    Tok::Int(text.parse().map_err(|_| syntax(pos))?, long)
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while chars
                    .get(j)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                let lower = word.to_ascii_lowercase();
                if chars.get(j) == Some(&'\'') && (lower == "guid" || lower == "datetime") {
                    let (s, next) = quoted(j)?;
                    i = next;
                    if lower == "guid" {
                        Tok::Guid(s)
                    } else {
                        Tok::DateTime(s)
                    }
                } else {
                    i = j;
                    Tok::Ident(word)
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "Syntax error: character '{other}' is not valid at position {pos} in '{src}'."
                )));
            }
        };
        out.push(Token { tok, pos });
    }
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    fields: &'a [FieldDef],
    type_name: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Ident(w), .. }) if w == kw)
    }

    fn end_pos(&self) -> usize {
        self.src.chars().count()
    }

    fn pos(&self) -> usize {
        self.peek().map_or(self.end_pos(), |t| t.pos)
    }

    fn expect(&mut self, tok: Tok) -> Result<(), ApiError> {
        match self.peek() {
            Some(t) if t.tok == tok => {
                self.i += 1;
                Ok(())
            }
            _ => Err(syntax(self.pos())),
        }
    }

    fn parse_or(&mut self) -> Result<Expr, ApiError> {
        let mut left = self.parse_and()?;
        while self.peek_keyword("or") {
            self.i += 1;
            let right = self.parse_and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Expr, ApiError> {
        let mut left = self.parse_unary()?;
        while self.peek_keyword("and") {
            self.i += 1;
            let right = self.parse_unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_unary(&mut self) -> Result<Expr, ApiError> {
        if self.peek_keyword("not") {
            self.i += 1;
            return Ok(Expr::Not(Box::new(self.parse_unary()?)));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, ApiError> {
        let start = self.pos();
        if matches!(
            self.peek(),
            Some(Token {
                tok: Tok::LParen,
                ..
            })
        ) {
            self.i += 1;
            let e = self.parse_or()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        if let Some(Token {
            tok: Tok::Ident(w), ..
        }) = self.peek()
        {
            let f = match w.as_str() {
                "startswith" => Some(BoolFn::StartsWith),
                "endswith" => Some(BoolFn::EndsWith),
                "substringof" => Some(BoolFn::SubstringOf),
                _ => None,
            };
            if let Some(f) = f {
                let name = w.clone();
                self.i += 1;
                self.expect(Tok::LParen)?;
                let a = self.parse_operand()?;
                self.expect(Tok::Comma)?;
                let b = self.parse_operand()?;
                self.expect(Tok::RParen)?;
                if self.operand_ty(&a) != Some(Ty::Str) && self.operand_ty(&a).is_some()
                    || self.operand_ty(&b) != Some(Ty::Str) && self.operand_ty(&b).is_some()
                {
                    return Err(ApiError::bad_request(format!(
                        "No applicable function found for '{name}' at position {start} with the specified arguments. The functions considered are: {name}(System.String, System.String)."
                    )));
                }
                return Ok(Expr::Call(f, a, b));
            }
        }
        let left = self.parse_operand()?;
        let op = match self.peek() {
            Some(Token {
                tok: Tok::Ident(w),
                pos,
            }) => Op::parse(w).map(|op| (op, *pos)),
            _ => None,
        };
        let Some((op, op_pos)) = op else {
            return match (&left, self.operand_ty(&left)) {
                (Operand::Field(name), Some(Ty::Bool)) => Ok(Expr::BoolField(name.clone())),
                (Operand::Lit(Val::Bool(b), _), _) => Ok(Expr::Const(*b)),
                _ => Err(ApiError::bad_request(format!(
                    "Expression of type 'System.Boolean' expected at position {start}."
                ))),
            };
        };
        self.i += 1;
        let right = self.parse_operand()?;
        let (lt, rt) = (self.operand_ty(&left), self.operand_ty(&right));
        let compatible = match (lt, rt) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) => a == b || (a.is_numeric() && b.is_numeric()),
        };
        if !compatible {
            return Err(ApiError::bad_request(format!(
                "Operator '{}' incompatible with operand types '{}' and '{}' at position {op_pos}.",
                op.name(),
                lt.map_or("null", Ty::clr),
                rt.map_or("null", Ty::clr),
            )));
        }
        Ok(Expr::Cmp(op, left, right))
    }

    fn operand_ty(&self, o: &Operand) -> Option<Ty> {
        match o {
            Operand::Field(name) => field(self.fields, name).map(|f| f.ty),
            Operand::Func(..) => Some(Ty::Str),
            Operand::Lit(_, ty) => *ty,
        }
    }

    fn parse_operand(&mut self) -> Result<Operand, ApiError> {
        let Some(Token { tok, pos }) = self.peek().cloned() else {
            return Err(ApiError::bad_request(format!(
                "Expression expected at position {}.",
                self.end_pos()
            )));
        };
        self.i += 1;
        Ok(match tok {
            Tok::Ident(w) => match w.as_str() {
                "true" => Operand::Lit(Val::Bool(true), Some(Ty::Bool)),
                "false" => Operand::Lit(Val::Bool(false), Some(Ty::Bool)),
                "null" => Operand::Lit(Val::Null, None),
                "trim" | "tolower" | "toupper" => {
                    let f = match w.as_str() {
                        "trim" => StrFn::Trim,
                        "tolower" => StrFn::ToLower,
                        _ => StrFn::ToUpper,
                    };
                    self.expect(Tok::LParen)?;
                    let arg = self.parse_operand()?;
                    self.expect(Tok::RParen)?;
                    if self.operand_ty(&arg).is_some_and(|t| t != Ty::Str) {
                        return Err(ApiError::bad_request(format!(
                            "No applicable function found for '{w}' at position {pos} with the specified arguments. The functions considered are: {w}(System.String)."
                        )));
                    }
                    Operand::Func(f, Box::new(arg))
                }
                name => {
                    if field(self.fields, name).is_none() {
                        return Err(ApiError::bad_request(format!(
                            "No property '{name}' exists in type '{}' at position {pos}.",
                            self.type_name
                        )));
                    }
                    Operand::Field(name.to_string())
                }
            },
            Tok::Str(s) => Operand::Lit(Val::Str(s), Some(Ty::Str)),
            Tok::Guid(s) => match Uuid::parse_str(&s) {
                Ok(g) => Operand::Lit(Val::Guid(g), Some(Ty::Guid)),
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "Unrecognized 'Edm.Guid' literal 'guid'{s}'' at '{pos}' in '{}'.",
                        self.src
                    )));
                }
            },
            Tok::DateTime(s) => match super::body::parse_datetime(&s) {
                Some(ms) => Operand::Lit(Val::DateTime(ms), Some(Ty::DateTime)),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "Unrecognized 'Edm.DateTime' literal 'datetime'{s}'' at '{pos}' in '{}'.",
                        self.src
                    )));
                }
            },
            Tok::Int(i, long) => {
                let ty = if long || i32::try_from(i).is_err() {
                    Ty::Int64
                } else {
                    Ty::Int32
                };
                Operand::Lit(Val::Int(i), Some(ty))
            }
            Tok::Dec(d) => Operand::Lit(Val::Double(d), Some(Ty::Decimal)),
            Tok::LParen | Tok::RParen | Tok::Comma => {
                return Err(ApiError::bad_request(format!(
                    "Expression expected at position {pos}."
                )));
            }
        })
    }
}

/// Parse and type-check `src` against the fields of `type_name`.
pub(crate) fn parse(src: &str, fields: &[FieldDef], type_name: &str) -> Result<Expr, ApiError> {
    let toks = lex(src)?;
    let mut p = Parser {
        src,
        toks,
        i: 0,
        fields,
        type_name,
    };
    if p.toks.is_empty() {
        return Err(ApiError::bad_request("Expression expected at position 0."));
    }
    let e = p.parse_or()?;
    if p.i < p.toks.len() {
        return Err(syntax(p.pos()));
    }
    Ok(e)
}

fn eval_operand(o: &Operand, get: &dyn Fn(&str) -> Val) -> Val {
    match o {
        Operand::Field(name) => get(name),
        Operand::Lit(v, _) => v.clone(),
        Operand::Func(f, arg) => match eval_operand(arg, get) {
            Val::Str(s) => Val::Str(match f {
                StrFn::Trim => s.trim().to_string(),
                StrFn::ToLower => s.to_lowercase(),
                StrFn::ToUpper => s.to_uppercase(),
            }),
            other => other,
        },
    }
}

fn as_f64(v: &Val) -> Option<f64> {
    match v {
        Val::Int(i) => Some(*i as f64),
        Val::Double(d) => Some(*d),
        _ => None,
    }
}

fn ordering(l: &Val, r: &Val) -> Option<Ordering> {
    match (l, r) {
        (Val::Str(a), Val::Str(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
        (Val::Guid(a), Val::Guid(b)) => Some(a.cmp(b)),
        (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
        (Val::DateTime(a), Val::DateTime(b)) => Some(a.cmp(b)),
        (a, b) => as_f64(a)?.partial_cmp(&as_f64(b)?),
    }
}

fn compare(op: Op, l: &Val, r: &Val) -> bool {
    let eq = match (l, r) {
        (Val::Null, Val::Null) => true,
        (Val::Null, _) | (_, Val::Null) => false,
        _ => ordering(l, r) == Some(Ordering::Equal),
    };
    match op {
        Op::Eq => eq,
        Op::Ne => !eq,
        _ => match ordering(l, r) {
            None => false,
            Some(o) => match op {
                Op::Gt => o == Ordering::Greater,
                Op::Ge => o != Ordering::Less,
                Op::Lt => o == Ordering::Less,
                _ => o != Ordering::Greater,
            },
        },
    }
}

impl Expr {
    /// Whether a row (given by its field getter) matches.
    pub(crate) fn eval(&self, get: &dyn Fn(&str) -> Val) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(get) || b.eval(get),
            Expr::And(a, b) => a.eval(get) && b.eval(get),
            Expr::Not(e) => !e.eval(get),
            Expr::Const(b) => *b,
            Expr::BoolField(name) => get(name) == Val::Bool(true),
            Expr::Cmp(op, l, r) => compare(*op, &eval_operand(l, get), &eval_operand(r, get)),
            Expr::Call(f, a, b) => {
                let (Val::Str(a), Val::Str(b)) = (eval_operand(a, get), eval_operand(b, get))
                else {
                    return false;
                };
                let (a, b) = (a.to_lowercase(), b.to_lowercase());
                match f {
                    BoolFn::StartsWith => a.starts_with(&b),
                    BoolFn::EndsWith => a.ends_with(&b),
                    BoolFn::SubstringOf => b.contains(&a),
                }
            }
        }
    }

    /// Field names the filter refers to.
    pub(crate) fn fields(&self, out: &mut Vec<String>) {
        fn operand(o: &Operand, out: &mut Vec<String>) {
            match o {
                Operand::Field(n) => out.push(n.clone()),
                Operand::Func(_, a) => operand(a, out),
                Operand::Lit(..) => {}
            }
        }
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Expr::Not(e) => e.fields(out),
            Expr::Cmp(_, a, b) | Expr::Call(_, a, b) => {
                operand(a, out);
                operand(b, out);
            }
            Expr::BoolField(n) => out.push(n.clone()),
            Expr::Const(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odata::{ro, rw};

    const FIELDS: &[FieldDef] = &[
        ro("ID", Ty::Guid),
        rw("Code", Ty::Str),
        rw("Name", Ty::Str),
        rw("Amount", Ty::Double),
        rw("Number", Ty::Int32),
        rw("Blocked", Ty::Bool),
        rw("Created", Ty::DateTime),
    ];

    fn row(name: &str) -> impl Fn(&str) -> Val + '_ {
        move |f: &str| match f {
            "ID" => Val::Guid(Uuid::nil()),
            "Code" => Val::str("                42"),
            "Name" => Val::str(name),
            "Amount" => Val::Double(12.5),
            "Number" => Val::Int(7),
            "Blocked" => Val::Bool(false),
            "Created" => Val::DateTime(1_700_000_000_000),
            _ => Val::Null,
        }
    }

    fn matches(filter: &str, name: &str) -> bool {
        parse(filter, FIELDS, "T").unwrap().eval(&row(name))
    }

    fn error(filter: &str) -> String {
        parse(filter, FIELDS, "T").unwrap_err().message
    }

    #[test]
    fn doubled_quote_is_one_quote() {
        assert!(matches("Name eq 'O''Brien & Zn.'", "O'Brien & Zn."));
        assert!(!matches("Name eq 'O''Brien & Zn.'", "O''Brien & Zn."));
    }

    #[test]
    fn string_eq_ignores_case_but_not_padding() {
        assert!(matches("Name eq 'acme b.v.'", "ACME B.V."));
        assert!(!matches("Code eq '42'", "x"));
        assert!(matches("trim(Code) eq '42'", "x"));
        assert!(matches("Code eq '                42'", "x"));
    }

    #[test]
    fn type_mismatch_names_types_and_position() {
        assert_eq!(
            error("Code eq 200184"),
            "Operator 'eq' incompatible with operand types 'System.String' and 'System.Int32' at position 5."
        );
        assert_eq!(
            error("ID eq '00000000-0000-0000-0000-000000000000'"),
            "Operator 'eq' incompatible with operand types 'System.Guid' and 'System.String' at position 3."
        );
    }

    #[test]
    fn unknown_field_is_refused() {
        assert_eq!(
            error("Nmae eq 'x'"),
            "No property 'Nmae' exists in type 'T' at position 0."
        );
    }

    #[test]
    fn and_or_not_parentheses_and_literals() {
        assert!(matches(
            "(Name eq 'a' or Name eq 'b') and Number ge 7 and Amount lt 13 and not Blocked",
            "b"
        ));
        assert!(!matches("Name eq 'a' and Number eq 7", "b"));
        assert!(matches(
            "ID eq guid'00000000-0000-0000-0000-000000000000'",
            "x"
        ));
        assert!(matches("Created gt datetime'2023-01-01T00:00:00'", "x"));
        assert!(matches("Amount eq 12.5 and Blocked eq false", "x"));
        assert!(matches("Name ne null", "x"));
        assert!(matches(
            "startswith(Name,'ac') and substringof('me', Name)",
            "acme"
        ));
    }

    #[test]
    fn syntax_errors_are_refused() {
        assert!(error("Name eq").starts_with("Expression expected"));
        assert!(error("Name eq 'x").contains("unterminated string literal"));
        assert!(error("Name eq 'x' 'y'").starts_with("Syntax error"));
        assert!(error("Name").contains("System.Boolean"));
        assert!(error("trim(Number) eq '7'").contains("No applicable function"));
    }
}
