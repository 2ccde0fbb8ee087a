//! SQL statements to templates: comments dropped, literals and every
//! placeholder style (`?`, `$1`, `%s`, `%(name)s`, `:name`) turned into `?`,
//! `IN (...)`, `VALUES (...), (...)` and `ARRAY[...]` lists collapsed to one
//! `?`, whitespace and keyword case folded. sqlparser's tokenizer reads the
//! statement in the dialect of `db.system.name`; text it cannot tokenize goes
//! through a small hand-written scanner with the same output. Text that looks
//! cut short is refused: its template would not match the whole statement's.

use std::hash::{DefaultHasher, Hash, Hasher};

use sqlparser::dialect::{GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

pub use super::truncation::looks_truncated;
use super::truncation::{DANGLING, DANGLING_PUNCTS, backslash_escapes, quoted_close};

/// The SQL dialect, from `db.system.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlDialect {
    /// PostgreSQL (and CockroachDB, Redshift...).
    Postgres,
    /// MySQL and MariaDB: backslash escapes, backtick identifiers, `"` strings.
    MySql,
    /// SQLite.
    Sqlite,
    /// Anything else.
    Generic,
}

impl SqlDialect {
    /// The dialect of a `db.system.name` value.
    pub fn of_system(system: &str) -> Self {
        match system {
            "postgresql" | "cockroachdb" | "redshift" => Self::Postgres,
            "mysql" | "mariadb" | "tidb" => Self::MySql,
            "sqlite" => Self::Sqlite,
            _ => Self::Generic,
        }
    }
}

/// How a statement carried its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parameters {
    /// None at all: every run is the same statement.
    None,
    /// Placeholders only: the values are not visible.
    Placeholders,
    /// Inline literals; the hash of their values tells identical runs apart.
    Literals(u64),
}

/// A statement's template and what it says about its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedSql {
    /// The template.
    pub template: String,
    /// Placeholders, literals or neither.
    pub parameters: Parameters,
    /// An `IN`, `VALUES` or `ARRAY` list of two or more values was collapsed:
    /// the statement already batches.
    pub batched: bool,
}

/// Why a statement has no template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlSkip {
    /// Nothing but whitespace and comments.
    Empty,
    /// Cut short: ends in `...`, mid-string, mid-comment, inside parentheses
    /// or after an operator or a keyword that needs more.
    Truncated,
}

impl SqlSkip {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Truncated => "truncated",
        }
    }
}

/// Normalises one statement.
pub fn normalize_sql(text: &str, dialect: SqlDialect) -> Result<NormalizedSql, SqlSkip> {
    if looks_truncated(text, dialect) {
        return Err(SqlSkip::Truncated);
    }
    let mut pieces = Pieces::default();
    if tokenize(text, dialect, &mut pieces).is_err() {
        pieces = Pieces::default();
        scan(text, dialect, &mut pieces);
    }
    while matches!(pieces.list.last(), Some(Piece::Punct(";"))) {
        pieces.list.pop();
    }
    match pieces.list.last() {
        None => return Err(SqlSkip::Empty),
        Some(Piece::Punct(p)) if DANGLING_PUNCTS.contains(p) => return Err(SqlSkip::Truncated),
        Some(Piece::Keyword(k)) if DANGLING.contains(&k.as_str()) => {
            return Err(SqlSkip::Truncated);
        }
        _ => {}
    }
    let (list, batched) = collapse_lists(&pieces.list);
    let parameters = if pieces.literals > 0 {
        Parameters::Literals(pieces.literal_hash.finish())
    } else if pieces.placeholders > 0 {
        Parameters::Placeholders
    } else {
        Parameters::None
    };
    Ok(NormalizedSql {
        template: render(&list),
        parameters,
        batched,
    })
}

/// One element of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// A reserved keyword, upper case.
    Keyword(String),
    /// An identifier or other word, as it will be shown.
    Word(String),
    /// A literal or placeholder.
    Param,
    /// An operator or punctuation.
    Punct(&'static str),
    /// An operator not in the fixed set.
    Other(String),
}

#[derive(Debug, Default)]
struct Pieces {
    list: Vec<Piece>,
    literals: usize,
    placeholders: usize,
    literal_hash: DefaultHasher,
}

impl Pieces {
    fn literal(&mut self, value: &str) {
        self.fold_sign();
        value.hash(&mut self.literal_hash);
        self.literals += 1;
        self.list.push(Piece::Param);
    }

    fn placeholder(&mut self) {
        self.placeholders += 1;
        self.list.push(Piece::Param);
    }

    /// `- 5` is one literal when the minus is a sign, not a subtraction.
    fn fold_sign(&mut self) {
        let n = self.list.len();
        if n == 0 || !matches!(self.list[n - 1], Piece::Punct("-" | "+")) {
            return;
        }
        let operand_before = n >= 2
            && matches!(
                self.list[n - 2],
                Piece::Word(_) | Piece::Param | Piece::Punct(")" | "]")
            );
        if !operand_before {
            self.list.pop();
        }
    }

    fn word(&mut self, text: &str) {
        let upper = text.to_ascii_uppercase();
        if upper == "TRUE" || upper == "FALSE" {
            self.literal(&upper);
        } else if is_reserved(&upper) {
            self.list.push(Piece::Keyword(upper));
        } else {
            self.list.push(Piece::Word(text.to_ascii_lowercase()));
        }
    }

    fn punct(&mut self, text: &str) {
        let fixed = PUNCTS.iter().find(|p| **p == text);
        self.list.push(match fixed {
            Some(p) => Piece::Punct(p),
            None => Piece::Other(text.to_owned()),
        });
    }

    fn last_is_operand(&self) -> bool {
        matches!(
            self.list.last(),
            Some(Piece::Word(_) | Piece::Param | Piece::Punct(")" | "]"))
        )
    }
}

const PUNCTS: &[&str] = &[
    "(", ")", "[", "]", ",", ".", "::", ";", "-", "+", "*", "/", "%", "=", "<", ">", "<=", ">=",
    "<>", "!=", "||",
];

/// Keywords shown in upper case; other words are identifiers (lower case).
/// A short list on purpose: sqlparser knows hundreds of keywords, and `name`
/// or `status` are column names far more often than keywords.
const RESERVED: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COALESCE",
    "CONFLICT",
    "COUNT",
    "CROSS",
    "CURRENT_DATE",
    "CURRENT_TIMESTAMP",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DO",
    "ELSE",
    "END",
    "EXISTS",
    "FALSE",
    "FETCH",
    "FIRST",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "ILIKE",
    "IN",
    "INNER",
    "INSERT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCK",
    "MAX",
    "MIN",
    "NEXT",
    "NOT",
    "NOTHING",
    "NOW",
    "NULL",
    "NULLS",
    "OF",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "RETURNING",
    "RIGHT",
    "ROW",
    "ROWS",
    "SELECT",
    "SET",
    "SHARE",
    "SKIP",
    "SOME",
    "SUM",
    "THEN",
    "TRUE",
    "UNION",
    "UPDATE",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
    "AVG",
    "BIGINT",
    "BOOLEAN",
    "INT",
    "INTEGER",
    "TEXT",
    "UUID",
    "VARCHAR",
    "TIMESTAMP",
    "DATE",
    "NUMERIC",
    "DECIMAL",
    "JSONB",
    "JSON",
    "REPLACE",
    "IGNORE",
    "DUPLICATE",
    "EXCEPT",
    "INTERSECT",
    "RECURSIVE",
    "WINDOW",
    "FILTER",
    "NOWAIT",
    "LOCKED",
];

fn is_reserved(upper: &str) -> bool {
    RESERVED.contains(&upper)
}

/// Keywords that take a parenthesised argument list with no space before it.
const CALL_KEYWORDS: &[&str] = &[
    "ANY", "ALL", "SOME", "ARRAY", "CAST", "COALESCE", "COUNT", "EXISTS", "MAX", "MIN", "NOW",
    "SUM", "AVG", "OVER", "FILTER", "VARCHAR", "NUMERIC", "DECIMAL", "ROW", "REPLACE",
];

fn tokenize(text: &str, dialect: SqlDialect, out: &mut Pieces) -> Result<(), ()> {
    let tokens = match dialect {
        SqlDialect::Postgres => Tokenizer::new(&PostgreSqlDialect {}, text)
            .with_unescape(false)
            .tokenize(),
        SqlDialect::MySql => Tokenizer::new(&MySqlDialect {}, text)
            .with_unescape(false)
            .tokenize(),
        SqlDialect::Sqlite => Tokenizer::new(&SQLiteDialect {}, text)
            .with_unescape(false)
            .tokenize(),
        SqlDialect::Generic => Tokenizer::new(&GenericDialect {}, text)
            .with_unescape(false)
            .tokenize(),
    }
    .map_err(|_| ())?;
    let mut i = 0;
    while i < tokens.len() {
        let next = |k: usize| tokens.get(i + k);
        match &tokens[i] {
            Token::EOF | Token::Whitespace(_) => {}
            Token::Word(w) => match w.quote_style {
                Some(q) => {
                    let close = match q {
                        '[' => ']',
                        other => other,
                    };
                    out.list.push(Piece::Word(format!("{q}{}{close}", w.value)));
                }
                None if w.keyword == Keyword::NoKeyword || !w.value.is_empty() => {
                    out.word(&w.value);
                }
                None => out.word(&w.value),
            },
            Token::Number(n, _) => out.literal(n),
            Token::SingleQuotedString(s)
            | Token::DoubleQuotedString(s)
            | Token::TripleSingleQuotedString(s)
            | Token::TripleDoubleQuotedString(s)
            | Token::NationalStringLiteral(s)
            | Token::EscapedStringLiteral(s)
            | Token::UnicodeStringLiteral(s)
            | Token::HexStringLiteral(s)
            | Token::SingleQuotedByteStringLiteral(s)
            | Token::DoubleQuotedByteStringLiteral(s)
            | Token::TripleSingleQuotedByteStringLiteral(s)
            | Token::TripleDoubleQuotedByteStringLiteral(s)
            | Token::SingleQuotedRawStringLiteral(s)
            | Token::DoubleQuotedRawStringLiteral(s)
            | Token::TripleSingleQuotedRawStringLiteral(s)
            | Token::TripleDoubleQuotedRawStringLiteral(s) => out.literal(s),
            Token::DollarQuotedString(s) => out.literal(&s.value),
            Token::Placeholder(_) | Token::Question => out.placeholder(),
            // `%s` and `%(name)s`: Python DB-API placeholders.
            Token::Mod if matches!(next(1), Some(Token::Word(w)) if w.quote_style.is_none() && matches!(w.value.as_str(), "s" | "d" | "b")) =>
            {
                out.placeholder();
                i += 1;
            }
            Token::Mod
                if matches!(next(1), Some(Token::LParen))
                    && matches!(next(2), Some(Token::Word(_)))
                    && matches!(next(3), Some(Token::RParen))
                    && matches!(next(4), Some(Token::Word(w)) if w.value == "s") =>
            {
                out.placeholder();
                i += 4;
            }
            // `:name` (Oracle, SQLAlchemy text()) where an operand is expected.
            Token::Colon if !out.last_is_operand() && matches!(next(1), Some(Token::Word(_))) => {
                out.placeholder();
                i += 1;
            }
            Token::Comma => out.punct(","),
            Token::LParen => out.punct("("),
            Token::RParen => out.punct(")"),
            Token::LBracket => out.punct("["),
            Token::RBracket => out.punct("]"),
            other => out.punct(&other.to_string()),
        }
        i += 1;
    }
    Ok(())
}

/// The fallback for text the tokenizer refuses: words, quoted strings and
/// identifiers, numbers, placeholders, comments and single-character operators.
fn scan(text: &str, dialect: SqlDialect, out: &mut Pieces) {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let backslash = backslash_escapes(text, dialect);
    while i < chars.len() {
        let c = chars[i];
        let at = |k: usize| chars.get(i + k).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && at(1) == Some('-') || c == '#' && dialect == SqlDialect::MySql {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(1) == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || (c == '"' && dialect == SqlDialect::MySql) {
            let end = quoted_close(&chars, i, c, backslash).unwrap_or(chars.len());
            let value: String = chars[i..end.min(chars.len())].iter().collect();
            out.literal(&value);
            i = end;
        } else if c == '['
            && dialect == SqlDialect::Sqlite
            && let Some(close) = chars[i..].iter().position(|c| *c == ']')
        {
            // SQLite accepts MS SQL's [bracketed identifiers].
            let value: String = chars[i..=i + close].iter().collect();
            out.list.push(Piece::Word(value));
            i += close + 1;
        } else if c == '"' || c == '`' {
            let end = quoted_close(&chars, i, c, false).unwrap_or(chars.len());
            let value: String = chars[i..end.min(chars.len())].iter().collect();
            out.list.push(Piece::Word(value));
            i = end;
        } else if c.is_ascii_digit() || (c == '.' && at(1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            let value: String = chars[start..i].iter().collect();
            out.literal(&value);
        } else if let Some(end) = dollar_quoted_end(&chars, i, dialect) {
            let value: String = chars[i..end].iter().collect();
            out.literal(&value);
            i = end;
        } else if c == '$' && at(1).is_some_and(|d| d.is_ascii_digit()) || c == '?' {
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.placeholder();
        } else if c == '%' && at(1) == Some('s') {
            i += 2;
            out.placeholder();
        } else if c == '%'
            && at(1) == Some('(')
            && let Some(close) = chars[i..].iter().position(|c| *c == ')')
            && chars.get(i + close + 1) == Some(&'s')
        {
            i += close + 2;
            out.placeholder();
        } else if c == ':' && at(1) == Some(':') {
            out.punct("::");
            i += 2;
        } else if c == ':' && at(1).is_some_and(char::is_alphabetic) && !out.last_is_operand() {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.placeholder();
        } else if matches!(c, 'x' | 'X' | 'e' | 'E' | 'n' | 'N' | 'b' | 'B')
            && at(1) == Some('\'')
            && !out.last_is_operand()
        {
            // X'..', E'..', N'..', B'..': prefixed string literals.
            let escapes = backslash || matches!(c, 'e' | 'E');
            let end = quoted_close(&chars, i + 1, '\'', escapes).unwrap_or(chars.len());
            let value: String = chars[i..end].iter().collect();
            out.literal(&value);
            i = end;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$')) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.word(&word);
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["<=", ">=", "<>", "!=", "||"].contains(&two.as_str()) {
                out.punct(&two);
                i += 2;
            } else {
                out.punct(&c.to_string());
                i += 1;
            }
        }
    }
}

/// `$tag$ ... $tag$` (PostgreSQL dollar quoting) starting at `start`: the
/// index past its end (or the text's end when unclosed).
fn dollar_quoted_end(chars: &[char], start: usize, dialect: SqlDialect) -> Option<usize> {
    if chars[start] != '$' || dialect == SqlDialect::MySql {
        return None;
    }
    let tag_len = chars[start + 1..]
        .iter()
        .position(|c| !(c.is_alphabetic() || *c == '_'))?;
    if chars.get(start + 1 + tag_len) != Some(&'$') {
        return None;
    }
    let tag = &chars[start..=start + 1 + tag_len];
    let body = start + tag.len();
    Some(
        (body..chars.len())
            .find(|k| chars[*k..].starts_with(tag))
            .map_or(chars.len(), |k| k + tag.len()),
    )
}

/// Collapses value lists after `IN`, `VALUES` and `ARRAY` to one `?`; several
/// `VALUES` rows become one. Returns the pieces and whether a list of two or
/// more values was collapsed.
fn collapse_lists(pieces: &[Piece]) -> (Vec<Piece>, bool) {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    let mut batched = false;
    let mut i = 0;
    while i < pieces.len() {
        let opener = matches!(pieces[i], Piece::Punct("(" | "["));
        let after_list_keyword = matches!(
            out.last(),
            Some(Piece::Keyword(k)) if matches!(k.as_str(), "IN" | "VALUES" | "VALUE" | "ARRAY" | "ANY")
        );
        let next_row = continues_values(&out);
        if opener
            && (after_list_keyword || next_row)
            && let Some((close, items)) = value_group(pieces, i)
        {
            if next_row {
                // `VALUES (?), (?)`: drop the comma; the first row stands for all.
                out.pop();
                batched = true;
            } else {
                batched |= items >= 2;
                out.push(pieces[i].clone());
                out.push(Piece::Param);
                out.push(pieces[close].clone());
            }
            i = close + 1;
            continue;
        }
        out.push(pieces[i].clone());
        i += 1;
    }
    (out, batched)
}

/// `out` ends with `VALUES (?) ,`: the next group is another row.
fn continues_values(out: &[Piece]) -> bool {
    let n = out.len();
    n >= 5
        && out[n - 1] == Piece::Punct(",")
        && out[n - 2] == Piece::Punct(")")
        && out[n - 3] == Piece::Param
        && out[n - 4] == Piece::Punct("(")
        && matches!(&out[n - 5], Piece::Keyword(k) if k == "VALUES" || k == "VALUE")
}

/// When the group opened at `open` holds only values (parameters, `NULL`,
/// `DEFAULT`, casts of them, and nested groups of values), its closing index
/// and how many items it holds.
fn value_group(pieces: &[Piece], open: usize) -> Option<(usize, usize)> {
    let closing = match pieces[open] {
        Piece::Punct("(") => ")",
        _ => "]",
    };
    let mut items = 1;
    let mut i = open + 1;
    while i < pieces.len() {
        match &pieces[i] {
            Piece::Punct(p) if *p == closing => return Some((i, items)),
            Piece::Punct(",") => items += 1,
            Piece::Param | Piece::Punct("::") => {}
            Piece::Keyword(k) if matches!(k.as_str(), "NULL" | "DEFAULT") => {}
            // A cast's type name: `?::int`.
            Piece::Keyword(_) | Piece::Word(_) if i > 0 && pieces[i - 1] == Piece::Punct("::") => {}
            Piece::Punct("(" | "[") => {
                let (close, _) = value_group(pieces, i)?;
                i = close;
            }
            _ => return None,
        }
        i += 1;
    }
    None
}

fn render(pieces: &[Piece]) -> String {
    let mut out = String::new();
    let mut previous: Option<&Piece> = None;
    for piece in pieces {
        let text = match piece {
            Piece::Keyword(s) | Piece::Word(s) | Piece::Other(s) => s.as_str(),
            Piece::Param => "?",
            Piece::Punct(p) => p,
        };
        let space = match (previous, piece) {
            (None, _) => false,
            (_, Piece::Punct(")" | "]" | "," | "." | "::" | ";")) => false,
            (Some(Piece::Punct("(" | "[" | "." | "::")), _) => false,
            (Some(Piece::Word(_)), Piece::Punct("(" | "[")) => false,
            (Some(Piece::Keyword(k)), Piece::Punct("(" | "[")) => {
                !CALL_KEYWORDS.contains(&k.as_str())
            }
            _ => true,
        };
        if space {
            out.push(' ');
        }
        out.push_str(text);
        previous = Some(piece);
    }
    out
}

#[cfg(test)]
#[path = "normalize_tests.rs"]
mod tests;
