//! What a database span says about its query: the text with literal values
//! replaced by `?` (values can be personal data and make every query unique),
//! the operation, and the table when it is plain to see. The agent normalises
//! further; this pass only has to be safe and cheap.

/// Longest query text recorded; longer text is cut and marked with `...`
/// (the agent skips cut text when it looks for N+1 patterns).
pub const MAX_QUERY_TEXT: usize = 4096;

/// A query as a span records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryInfo {
    /// `db.query.text`: the SQL with literals as `?`, comments removed.
    pub text: String,
    /// `db.operation.name`: `SELECT`, `INSERT`, ...
    pub operation: Option<String>,
    /// `db.collection.name`: the table after `FROM`, `INTO` or `UPDATE`.
    pub collection: Option<String>,
}

/// Describes `sql`. With `parameterised`, values travel apart from the text,
/// which is kept as written (only comments and surplus whitespace go).
/// `double_quotes_are_strings` is MySQL's reading of `"..."`.
pub fn describe(sql: &str, parameterised: bool, double_quotes_are_strings: bool) -> QueryInfo {
    let text = scrub(sql, !parameterised, double_quotes_are_strings);
    let (operation, collection) = operation_and_collection(&text);
    let text = cut(text);
    QueryInfo {
        text,
        operation,
        collection,
    }
}

/// Removes comments and folds whitespace; with `literals`, replaces string,
/// numeric and boolean literals by `?`.
fn scrub(sql: &str, literals: bool, double_quotes_are_strings: bool) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let push_space = |out: &mut String| {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                push_space(&mut out);
            }
            '/' if next == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
                push_space(&mut out);
                continue;
            }
            c if c.is_whitespace() => {
                push_space(&mut out);
                i += 1;
                continue;
            }
            '\'' => {
                let end = quoted_end(&chars, i, '\'');
                if literals {
                    out.push('?');
                } else {
                    out.extend(&chars[i..end]);
                }
                i = end;
                continue;
            }
            '"' | '`' => {
                let end = quoted_end(&chars, i, c);
                if literals && c == '"' && double_quotes_are_strings {
                    out.push('?');
                } else {
                    out.extend(&chars[i..end]);
                }
                i = end;
                continue;
            }
            '$' if literals && let Some(end) = dollar_quoted_end(&chars, i) => {
                out.push('?');
                i = end;
                continue;
            }
            c if literals && c.is_ascii_digit() && !follows_identifier(&chars, i) => {
                i = number_end(&chars, i);
                out.push('?');
                continue;
            }
            c if is_identifier_char(c) => {
                let start = i;
                while i < chars.len() && is_identifier_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if literals
                    && (word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false"))
                {
                    out.push('?');
                } else {
                    out.push_str(&word);
                }
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// True when the digit at `i` is part of an identifier or placeholder
/// (`t1`, `$1`, `col_2`) rather than a number of its own.
fn follows_identifier(chars: &[char], i: usize) -> bool {
    i > 0
        && (is_identifier_char(chars[i - 1])
            || chars[i - 1] == '.' && i > 1 && is_identifier_char(chars[i - 2]))
}

/// The index after a quoted run starting at `start`; a doubled quote is an
/// escaped one, and a backslash escapes the next character.
fn quoted_end(chars: &[char], start: usize, quote: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// PostgreSQL's `$tag$ ... $tag$` strings (not `$1` placeholders).
fn dollar_quoted_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        if chars[i].is_ascii_digit() && i == start + 1 {
            return None;
        }
        i += 1;
    }
    if chars.get(i) != Some(&'$') {
        return None;
    }
    let tag = &chars[start..=i];
    let body = i + 1;
    (body..chars.len())
        .find(|&j| chars[j..].starts_with(tag))
        .map(|j| j + tag.len())
        .or(Some(chars.len()))
}

fn number_end(chars: &[char], start: usize) -> usize {
    let mut i = start;
    if chars[i] == '0' && matches!(chars.get(i + 1), Some('x' | 'X')) {
        i += 2;
        while i < chars.len() && chars[i].is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    while i < chars.len() {
        let c = chars[i];
        let exponent_sign =
            matches!(c, '+' | '-') && i > start && matches!(chars[i - 1], 'e' | 'E');
        if c.is_ascii_digit() || c == '.' || matches!(c, 'e' | 'E') || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

fn operation_and_collection(text: &str) -> (Option<String>, Option<String>) {
    let words: Vec<&str> = text
        .split([' ', '(', ')', ',', ';'])
        .filter(|w| !w.is_empty())
        .collect();
    let Some(first) = words.first() else {
        return (None, None);
    };
    let operation = first.to_ascii_uppercase();
    if !operation.chars().all(|c| c.is_ascii_alphabetic()) {
        return (None, None);
    }
    let after = match operation.as_str() {
        "SELECT" | "DELETE" => "FROM",
        "INSERT" | "REPLACE" => "INTO",
        "UPDATE" => "UPDATE",
        _ => return (Some(operation), None),
    };
    let collection = words
        .iter()
        .position(|w| w.eq_ignore_ascii_case(after))
        .and_then(|at| words.get(at + 1))
        .map(|name| name.trim_matches(['"', '`']).to_owned())
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '"')
        });
    (Some(operation), collection)
}

fn cut(mut text: String) -> String {
    if text.len() > MAX_QUERY_TEXT {
        let mut end = MAX_QUERY_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal_free(sql: &str) -> String {
        describe(sql, false, false).text
    }

    #[test]
    fn literals_become_placeholders() {
        let cases = [
            (
                "SELECT * FROM customers WHERE id = 42",
                "SELECT * FROM customers WHERE id = ?",
            ),
            (
                "select name from t1 where x = 'O''Brien' and y = 3.5e-2",
                "select name from t1 where x = ? and y = ?",
            ),
            (
                "UPDATE orders SET paid = TRUE, total = -0x1F WHERE id = $1",
                "UPDATE orders SET paid = ?, total = -? WHERE id = $1",
            ),
            (
                "SELECT $body$ it's $1 $body$, col_2 FROM \"Order\"",
                "SELECT ?, col_2 FROM \"Order\"",
            ),
            (
                "SELECT a -- the id 7\nFROM b /* secret 'x' */ WHERE c IN (1, 2,3)",
                "SELECT a FROM b WHERE c IN (?, ?,?)",
            ),
            (
                "INSERT INTO `items` (a) VALUES ('x\\'y')",
                "INSERT INTO `items` (a) VALUES (?)",
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(literal_free(sql), expected, "{sql}");
        }
    }

    #[test]
    fn parameterised_text_is_kept_but_comments_go() {
        let info = describe(
            "SELECT *  FROM orders /* hint */ WHERE id = $1 AND kind = 'x'",
            true,
            false,
        );
        assert_eq!(
            info.text,
            "SELECT * FROM orders WHERE id = $1 AND kind = 'x'"
        );
    }

    #[test]
    fn mysql_double_quotes_are_strings() {
        assert_eq!(
            describe("SELECT * FROM t WHERE name = \"bob\"", false, true).text,
            "SELECT * FROM t WHERE name = ?"
        );
    }

    #[test]
    fn operation_and_table_are_found() {
        let cases = [
            (
                "SELECT id FROM orders WHERE x = 1",
                Some("SELECT"),
                Some("orders"),
            ),
            (
                "insert into public.items(a) values (1)",
                Some("INSERT"),
                Some("public.items"),
            ),
            (
                "UPDATE \"Customers\" SET a = 1",
                Some("UPDATE"),
                Some("Customers"),
            ),
            ("DELETE FROM sessions", Some("DELETE"), Some("sessions")),
            ("BEGIN", Some("BEGIN"), None),
            ("SELECT 1", Some("SELECT"), None),
        ];
        for (sql, operation, table) in cases {
            let info = describe(sql, false, false);
            assert_eq!(info.operation.as_deref(), operation, "{sql}");
            assert_eq!(info.collection.as_deref(), table, "{sql}");
        }
    }

    #[test]
    fn long_text_is_cut_and_marked() {
        let sql = format!("SELECT {} FROM t", "a, ".repeat(3000));
        let text = describe(&sql, true, false).text;
        assert!(text.ends_with("..."));
        assert_eq!(text.len(), MAX_QUERY_TEXT + 3);
    }

    #[test]
    fn unterminated_quotes_do_not_panic() {
        for sql in [
            "SELECT 'abc",
            "SELECT $tag$ abc",
            "SELECT /* open",
            "SELECT \"x",
            "0x",
            "1e",
            "'",
        ] {
            let _ = describe(sql, false, false);
        }
    }
}
