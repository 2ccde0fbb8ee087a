//! Whether a statement was cut short before it reached the agent: SDKs and
//! drivers cap `db.query.text`, and a cut statement's template would not match
//! the whole statement's. Unclosed quotes, comments and parentheses, a trailing
//! `...`, or an ending that needs more (an operator, `WHERE`) all say so.

use super::normalize::SqlDialect;

/// The index just past the quote closing the one at `start`; `None` when
/// nothing closes it.
pub(super) fn quoted_close(
    chars: &[char],
    start: usize,
    quote: char,
    backslash: bool,
) -> Option<usize> {
    let mut i = start + 1;
    while i < chars.len() {
        if backslash && chars[i] == '\\' {
            i += 2;
        } else if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return Some(i + 1);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Keywords after which a statement cannot end.
pub(super) const DANGLING: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "JOIN", "ON", "SET", "BY", "IN", "VALUES",
    "INTO", "LIKE", "BETWEEN", "WHEN", "THEN", "ELSE", "CASE", "HAVING", "LIMIT", "OFFSET",
    "UNION", "IS", "UPDATE", "INSERT", "DELETE", "AS", "WITH", "USING", "ORDER", "GROUP",
];

/// Operators and punctuation after which a statement cannot end.
pub(super) const DANGLING_PUNCTS: &[&str] = &[
    "=", "<", ">", "<=", ">=", "<>", "!=", ",", "(", "[", "+", "-", "/", "%", "||", ".", "::",
];

/// Whether the text was cut, as far as the raw text tells: it ends in `...`,
/// or inside a string, quoted identifier, comment or parentheses (the ending
/// after an operator or keyword is checked on tokens, past any comment).
/// Backslash escapes are MySQL's (and PostgreSQL `E''` strings'); for an
/// unknown dialect the text is only called cut when it is unbalanced both
/// with and without them.
pub fn looks_truncated(text: &str, dialect: SqlDialect) -> bool {
    let trimmed = text.trim_end();
    if trimmed.ends_with("...") || trimmed.ends_with('…') {
        return true;
    }
    match dialect {
        SqlDialect::MySql => !balanced(text, true, true),
        SqlDialect::Postgres | SqlDialect::Sqlite => !balanced(text, false, false),
        SqlDialect::Generic => !balanced(text, false, false) && !balanced(text, true, false),
    }
}

/// Whether backslashes escape quotes in `text`: always in MySQL, never in
/// PostgreSQL and SQLite (outside `E''`), and for an unknown dialect when the
/// text only balances with them.
pub(super) fn backslash_escapes(text: &str, dialect: SqlDialect) -> bool {
    match dialect {
        SqlDialect::MySql => true,
        SqlDialect::Postgres | SqlDialect::Sqlite => false,
        SqlDialect::Generic => !balanced(text, false, false),
    }
}

/// Quotes, comments and parentheses all closed at the end of `text`.
fn balanced(text: &str, backslash: bool, hash_comments: bool) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let mut depth: i64 = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = |k: usize| chars.get(i + k).copied();
        match c {
            '\'' | '"' | '`' => match quoted_close(
                &chars,
                i,
                c,
                (backslash && c != '`') || (c == '\'' && escape_string_prefix(&chars, i)),
            ) {
                Some(end) => {
                    i = end;
                    continue;
                }
                None => return false,
            },
            '-' if at(1) == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '#' if hash_comments => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(1) == Some('*') => {
                i += 2;
                loop {
                    if i + 1 >= chars.len() {
                        return false;
                    }
                    if chars[i] == '*' && chars[i + 1] == '/' {
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            '$' if !backslash => {
                // PostgreSQL dollar quoting: `$tag$ ... $tag$` (`$1` is a placeholder).
                if let Some(tag_end) = (i + 1..chars.len())
                    .take_while(|k| {
                        chars[*k] == '$' || chars[*k].is_alphanumeric() || chars[*k] == '_'
                    })
                    .find(|k| chars[*k] == '$')
                    && !chars[i + 1..tag_end].iter().any(char::is_ascii_digit)
                {
                    let tag: String = chars[i..=tag_end].iter().collect();
                    let rest: String = chars[tag_end + 1..].iter().collect();
                    match rest.find(&tag) {
                        Some(pos) => {
                            i = tag_end + 1 + rest[..pos].chars().count() + tag.chars().count();
                            continue;
                        }
                        None => return false,
                    }
                }
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    depth <= 0
}

/// `E'...'`: a PostgreSQL string with backslash escapes.
fn escape_string_prefix(chars: &[char], quote: usize) -> bool {
    quote >= 1
        && matches!(chars[quote - 1], 'e' | 'E')
        && (quote == 1 || !(chars[quote - 2].is_alphanumeric() || chars[quote - 2] == '_'))
}
