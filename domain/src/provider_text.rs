//! Text a provider sends back (error messages, categories, account names) is data
//! shown to workspace members and stored in events, never a channel into a
//! terminal, a log viewer or a browser. [`clean`] makes any such text safe to show:
//!
//! - control characters, ANSI escape sequences and invisible Unicode format
//!   characters (bidi overrides, zero-width characters) are removed; whitespace
//!   runs become one space;
//! - credentials a provider may echo back are replaced by `[redacted]`: the value
//!   after `Bearer`/`Basic`, `access_token=`, `client_secret:`, `"api_key": "…"` and
//!   similar pairs, and JWTs;
//! - at most [`MAX_CHARS`] characters are kept (characters, never a split UTF-8
//!   sequence).
//!
//! Redaction is a hand-written scanner rather than regular expressions so that the
//! domain crate keeps its few dependencies and so that every rule is monotone (a
//! prefix of a token that does not match never matches), which keeps `clean`
//! idempotent after truncation.

/// The most characters of provider text kept.
pub const MAX_CHARS: usize = 200;

/// What a redacted credential reads as.
pub const REDACTED: &str = "[redacted]";

/// Key names (lower case, `-` read as `_`) whose value is a credential: a key
/// ending with one of these, followed by `=` or `:`, has its value redacted.
const SECRET_KEYS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "private_key",
    "signature",
    "credentials",
    "authorization",
];

/// Makes provider text safe to show and store (see the module documentation).
pub fn clean(text: &str) -> String {
    let visible = strip_invisible(text);
    let redacted = redact(&visible);
    truncate(&redacted)
}

/// Unicode format characters that change how text around them is displayed or
/// compared without being visible: bidi embeddings, overrides and isolates, marks,
/// zero-width characters, the BOM, interlinear annotations and tag characters.
/// Listed by hand because the standard library does not expose general categories.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

/// Removes escape sequences, control and format characters; turns whitespace runs
/// (line breaks and tabs included) into one space and trims both ends.
fn strip_invisible(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4 * MAX_CHARS));
    let mut chars = text.chars().peekable();
    let mut pending_space = false;
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            skip_escape(&mut chars);
        } else if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if !c.is_control() && !is_invisible_format(c) {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Skips the rest of an ANSI escape sequence whose ESC was just read: a CSI
/// (`ESC [ params final`), an OSC (`ESC ] … BEL` or `ESC ] … ESC \`) or a
/// two-character escape.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            while chars
                .next_if(|c| ('\u{20}'..='\u{3f}').contains(c))
                .is_some()
            {}
            chars.next_if(|c| ('\u{40}'..='\u{7e}').contains(c));
        }
        Some(']') => {
            while let Some(c) = chars.next() {
                if c == '\u{07}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                    break;
                }
            }
        }
        _ => {}
    }
}

/// Replaces credentials with [`REDACTED`].
fn redact(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at_word_start = i == 0 || !is_word(chars[i - 1]);
        if at_word_start {
            if let Some(next) = auth_scheme(&chars, i, &mut out) {
                i = next;
                continue;
            }
            let run = run_len(&chars[i..], is_jwt_char);
            if run >= 20 && starts_with_ci(&chars[i..], "eyj") {
                out.push_str(REDACTED);
                i += run;
                continue;
            }
        }
        out.push(c);
        i += 1;
        if (c == '=' || c == ':') && key_is_secret(&out[..out.len() - 1]) {
            i = secret_value(&chars, i, &mut out);
        }
    }
    out
}

/// `Bearer <token>` or `Basic <credentials>` at `start`: writes the scheme and
/// `[redacted]` and answers where the text continues.
fn auth_scheme(chars: &[char], start: usize, out: &mut String) -> Option<usize> {
    let rest = &chars[start..];
    let (scheme_len, basic) = if starts_with_ci(rest, "bearer ") {
        (6, false)
    } else if starts_with_ci(rest, "basic ") {
        (5, true)
    } else {
        return None;
    };
    let token_start = start + scheme_len + 1;
    let token = run_len(&chars[token_start..], is_b64_token_char);
    let looks_like_credentials = if basic {
        basic_credentials(&chars[token_start..token_start + token])
    } else {
        // A prefix of a scheme name is a repeated scheme ("Bearer Bearer x"), not a
        // token; a prefix (not equality) keeps the rule monotone.
        let word: String = chars[token_start..token_start + token].iter().collect();
        token > 0 && !is_scheme_prefix(&word)
    };
    if !looks_like_credentials {
        return None;
    }
    out.extend(&chars[start..token_start]);
    out.push_str(REDACTED);
    Some(token_start + token)
}

/// Whether the word after `Basic` looks like base64 credentials rather than an
/// English word ("Basic authentication failed"): at least 8 characters with a
/// digit, `+`, `/`, `=` or an upper-case letter after the first. Each condition
/// holds for a longer token whenever it holds for a prefix (idempotence).
fn basic_credentials(token: &[char]) -> bool {
    token.len() >= 8
        && token.iter().enumerate().any(|(i, c)| {
            c.is_ascii_digit() || matches!(c, '+' | '/' | '=') || (i > 0 && c.is_ascii_uppercase())
        })
}

/// Whether the key just before a `=` or `:` (skipping spaces and one closing quote)
/// names a credential.
fn key_is_secret(before: &str) -> bool {
    let trimmed = before.trim_end();
    let trimmed = trimmed.strip_suffix(['"', '\'']).unwrap_or(trimmed);
    let key: String = trimmed
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    !key.is_empty() && SECRET_KEYS.iter().any(|k| key.ends_with(k))
}

/// After a secret key's separator at `start`: copies spaces and an opening quote,
/// then writes `[redacted]` for the value. Answers where the text continues.
fn secret_value(chars: &[char], start: usize, out: &mut String) -> usize {
    let mut i = start;
    while i < chars.len() && (chars[i] == ' ' || chars[i] == '"' || chars[i] == '\'') {
        out.push(chars[i]);
        i += 1;
    }
    let value = run_len(&chars[i..], |c| {
        !c.is_whitespace()
            && !matches!(
                c,
                '"' | '\'' | '&' | ',' | ';' | '{' | '}' | '(' | ')' | '<' | '>'
            )
    });
    let word: String = chars[i..i + value].iter().collect();
    // `Authorization: Bearer x` is left to the scheme rule, which keeps the scheme.
    if value == 0 || word == REDACTED || is_scheme_prefix(&word) {
        return i;
    }
    out.push_str(REDACTED);
    i + value
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => text[..cut].trim_end().to_owned(),
        None => text.to_owned(),
    }
}

/// Whether `word` is a (case-insensitive) prefix of an auth scheme name. Prefixes,
/// not only the names, so that truncating a token never makes it match.
fn is_scheme_prefix(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    "bearer".starts_with(&word) || "basic".starts_with(&word)
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_b64_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=')
}

fn is_jwt_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn run_len(chars: &[char], accept: impl Fn(char) -> bool) -> usize {
    chars.iter().take_while(|c| accept(**c)).count()
}

fn starts_with_ci(chars: &[char], prefix: &str) -> bool {
    let n = prefix.chars().count();
    chars.len() >= n
        && chars
            .iter()
            .zip(prefix.chars())
            .all(|(a, b)| a.to_ascii_lowercase() == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_messages_pass_unchanged() {
        let text = "Property values were not valid: email must be a valid address (INVALID_EMAIL)";
        assert_eq!(clean(text), text);
        assert_eq!(
            clean("Basic authentication is not enabled"),
            "Basic authentication is not enabled"
        );
    }

    #[test]
    fn control_characters_escapes_and_bidi_are_removed() {
        let text = "bad\u{1b}[31mred\u{1b}[0m\r\nline\ttwo\u{7}\u{0}\u{202e}gnp.exe\u{200b}\u{1b}]8;;http://x\u{7}link";
        assert_eq!(clean(text), "badred line twognp.exelink");
    }

    #[test]
    fn credentials_echoed_back_are_redacted() {
        let cases = [
            (
                "Authorization: Bearer abc.DEF-123_x",
                "Authorization: Bearer [redacted]",
            ),
            (
                "header was Basic dXNlcjpwYXNz",
                "header was Basic [redacted]",
            ),
            ("?access_token=s3cr3t&x=1", "?access_token=[redacted]&x=1"),
            (
                r#"{"refresh_token": "r-123", "ok":1}"#,
                r#"{"refresh_token": "[redacted]", "ok":1}"#,
            ),
            ("client_secret=abc def", "client_secret=[redacted] def"),
            ("X-Api-Key: k-42", "X-Api-Key: [redacted]"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig end",
                "jwt [redacted] end",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(clean(raw), want, "{raw}");
        }
    }

    #[test]
    fn long_text_keeps_200_characters_without_splitting_one() {
        let text = "é".repeat(500);
        let out = clean(&text);
        assert_eq!(out.chars().count(), MAX_CHARS);
        assert!(out.chars().all(|c| c == 'é'));
    }

    fn hostile_char() -> impl Strategy<Value = char> {
        prop_oneof![
            any::<char>(),
            prop::sample::select(vec![
                '\u{1b}', '[', ']', '\u{7}', '\\', '\n', ' ', '=', ':', '"', '\u{202e}',
                '\u{200b}', 'e', 'y', 'J', 'B', 'b', 'A', '1', '+', '_',
            ]),
        ]
    }

    fn hostile_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,400}",
            prop::collection::vec(hostile_char(), 0..400).prop_map(|v| v.into_iter().collect()),
            prop::collection::vec(
                prop::sample::select(vec![
                    "Bearer ",
                    "Basic ",
                    "access_token=",
                    "\"api_key\": \"",
                    "[redacted]",
                    "eyJ",
                    "abcDEF123",
                    "\u{1b}[1m",
                    "\u{1b}]0;",
                    " ",
                    "é",
                    "\u{202e}",
                    "\n",
                ]),
                0..80
            )
            .prop_map(|v| v.concat()),
        ]
    }

    proptest! {
        #[test]
        fn output_is_short_visible_and_stable(text in hostile_text()) {
            let once = clean(&text);
            prop_assert!(once.chars().count() <= MAX_CHARS);
            prop_assert!(!once.chars().any(|c| c.is_control() || is_invisible_format(c)));
            prop_assert_eq!(clean(&once), once);
        }

        #[test]
        fn echoed_tokens_never_survive(
            before in "[a-z ]{0,40}",
            token in "[A-Za-z0-9]{12,40}",
            after in "[a-z ,.]{0,40}",
            form in 0usize..5,
        ) {
            let secret = match form {
                0 => format!("Bearer {token}"),
                1 => format!("access_token={token}"),
                2 => format!("\"client_secret\":\"{token}\""),
                3 => format!("refresh_token: {token}"),
                _ => format!("api_key={token}"),
            };
            let out = clean(&format!("{before} {secret} {after}"));
            prop_assert!(!out.contains(&token), "{out}");
        }
    }
}
