//! Where a custom pull resumes, and the guards that keep a misbehaving provider
//! from making it loop or leak credentials.

use serde::{Deserialize, Serialize};

use crate::error::CrmError;
use crate::types::Cursor;

/// How many earlier cursors (as hashes) a resume point remembers: enough for the
/// cycles real APIs produce while keeping the stored cursor small (under 1.5 KB).
/// A longer cycle goes unnoticed by this check, but every page must also differ
/// from the one before it.
const SEEN_LIMIT: usize = 64;

/// The state carried in [`Cursor::Custom`]'s `next`, serialized as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The cursor token, offset, page number or next-page URL.
    #[serde(rename = "t")]
    pub token: String,
    /// FNV-1a hashes of every token used so far in this pull.
    #[serde(rename = "s", default)]
    pub seen: Vec<u64>,
    /// Hash of the ids on the previous page.
    #[serde(rename = "p", default)]
    pub last_page: Option<u64>,
}

impl Resume {
    pub fn decode(cursor: Option<Cursor>) -> Result<Option<Resume>, CrmError> {
        match cursor {
            None => Ok(None),
            Some(Cursor::Custom { next }) => serde_json::from_str(&next)
                .map(Some)
                .map_err(|_| CrmError::Config("the cursor was not made by this adapter".into())),
            Some(_) => Err(CrmError::Config(
                "the cursor belongs to another provider".into(),
            )),
        }
    }

    pub fn encode(&self) -> Cursor {
        Cursor::Custom {
            next: serde_json::to_string(self).unwrap_or_default(),
        }
    }

    /// The resume point after this one, refusing a token already used.
    pub fn follow(
        previous: Option<&Resume>,
        token: String,
        page_hash: u64,
    ) -> Result<Resume, CrmError> {
        let mut seen = previous.map(|p| p.seen.clone()).unwrap_or_default();
        if let Some(p) = previous {
            let current = fnv(p.token.as_bytes());
            if !seen.contains(&current) {
                seen.push(current);
            }
        }
        if seen.contains(&fnv(token.as_bytes())) {
            return Err(CrmError::Malformed(
                "the provider sent a next-page cursor it had already sent; pagination stopped"
                    .into(),
            ));
        }
        if seen.len() > SEEN_LIMIT {
            let excess = seen.len() - SEEN_LIMIT;
            seen.drain(..excess);
        }
        Ok(Resume {
            token,
            seen,
            last_page: Some(page_hash),
        })
    }
}

/// FNV-1a: stable across builds and platforms, unlike `DefaultHasher`, so stored
/// cursors keep working after an upgrade.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The `rel="next"` target of an RFC 8288 `Link` header value, if any.
pub fn next_link(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = rest.get(start + 1..)?;
        let end = after.find('>')?;
        let target = after.get(..end)?;
        let tail = after.get(end + 1..)?;
        let params = tail.find('<').and_then(|i| tail.get(..i)).unwrap_or(tail);
        let is_next = params.split(';').any(|param| {
            param
                .trim()
                .trim_end_matches(',')
                .split_once('=')
                .is_some_and(|(key, value)| {
                    key.trim().eq_ignore_ascii_case("rel")
                        && value
                            .trim()
                            .trim_end_matches(',')
                            .trim()
                            .trim_matches('"')
                            .split_ascii_whitespace()
                            .any(|rel| rel.eq_ignore_ascii_case("next"))
                })
        });
        if is_next {
            return Some(target.trim().to_owned());
        }
        rest = tail;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_next_link_among_others() {
        let header = r#"<https://api.example/x?page=1>; rel="prev", <https://api.example/x?page=3>; rel="next""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.example/x?page=3")
        );
        assert_eq!(
            next_link(r#"</x?p=2>; rel=next"#).as_deref(),
            Some("/x?p=2")
        );
        assert_eq!(next_link(r#"<https://a/>; rel="last""#), None);
        assert_eq!(next_link("<unterminated"), None);
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn a_repeated_token_is_refused() {
        let first = Resume::follow(None, "a".into(), 1);
        let second = first.and_then(|a| Resume::follow(Some(&a), "b".into(), 2));
        let again = second.and_then(|b| Resume::follow(Some(&b), "a".into(), 3));
        assert!(matches!(again, Err(CrmError::Malformed(_))));
    }

    #[test]
    fn cursors_round_trip() {
        let resume = Resume {
            token: "42".into(),
            seen: vec![1, 2],
            last_page: Some(9),
        };
        let decoded = Resume::decode(Some(resume.encode()));
        assert_eq!(decoded.ok().flatten(), Some(resume));
    }
}
