//! Request extractors whose failures speak the API's error format.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A JSON body. Malformed JSON or a field that fails to parse gives 400 naming the field.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (is_json, bytes) = read_body(req, state).await?;
        if !is_json {
            return Err(not_json());
        }
        parse_json(&bytes).map(Body)
    }
}

/// A JSON body that may be left out: an empty body (whatever its content type) is
/// `T::default()`; anything else is read as [`Body`] reads it.
pub struct BodyOrDefault<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for BodyOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (is_json, bytes) = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(BodyOrDefault(T::default()));
        }
        if !is_json {
            return Err(not_json());
        }
        parse_json(&bytes).map(BodyOrDefault)
    }
}

fn not_json() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as application/json",
    )
}

/// The body's bytes (413 past the limit), and whether it is declared JSON.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<(bool, Bytes), ApiError> {
    let is_json = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|e| match e.status() {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than 1 MiB",
            ),
            _ => ApiError::bad_request("the request body could not be read"),
        })?;
    Ok((is_json, bytes))
}

/// Parses a request body. Every body of the API is a JSON object; serde would also fill a
/// struct from an array of its fields in order (`[]` for all-optional fields, `["viewer",
/// "x"]` for a token request), so a top-level array is refused before parsing.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.trim_ascii_start().first() == Some(&b'[') {
        return Err(ApiError::bad_request(
            "the body must be a JSON object, not an array",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            )
        } else if path == "." {
            ApiError::bad_request(inner.to_string())
        } else {
            ApiError::invalid_field(&path, inner)
        }
    })
}

/// Query parameters, with the same error format.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::invalid_field(&path, e.into_inner())
            })
    }
}

/// `?limit=&cursor=` for every list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct Page {
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

pub const MAX_LIMIT: i64 = 500;

impl Page {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::invalid_field(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            )),
        }
    }

    pub fn cursor(&self) -> Result<Option<String>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        ApiError::invalid_field("cursor", "is not a cursor this API issued")
                    })
            })
            .transpose()
    }

    /// A keyset cursor of two parts (`key|id`: ids hold no `|`, a key may); both empty on
    /// the first page.
    pub fn keyset(&self) -> Result<(String, String), ApiError> {
        match self.cursor()? {
            Some(c) => c
                .rsplit_once('|')
                .map(|(t, i)| (t.to_owned(), i.to_owned()))
                .ok_or_else(|| {
                    ApiError::invalid_field("cursor", "is not a cursor this API issued")
                }),
            None => Ok((String::new(), String::new())),
        }
    }
}

pub fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// `{"data":[…],"next_cursor":…}`
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    /// `rows` holds up to `limit + 1` items; the extra one only proves there is a next page.
    pub fn page(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| encode_cursor(&key(r)))
        } else {
            None
        };
        List {
            data: rows,
            next_cursor,
        }
    }

    /// The same list with each item turned into another.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> List<U> {
        List {
            data: self.data.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// The entity named by a path or query parameter or a body field (`field` names it in the
/// error): 400 unless it is `contacts` or `companies`.
pub fn entity(field: &str, name: Option<&str>) -> Result<syncledger_domain::Entity, ApiError> {
    Ok(syncledger_engine::error::entity_named(field, name)?)
}

/// `deserialize_with` for a field whose presence matters: `Some(value)` whenever the field
/// is present, null included (absent stays `None` through `#[serde(default)]`).
pub fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `If-Match`: the version a change was based on, as the resource's `ETag` gave it (`"12"`,
/// or weak `W/"12"`). Absent or `*`: the change applies to whatever version is current.
/// Anything else (a list, a tag this API never sent) is 400 naming `If-Match`, so a client
/// never believes it is protected when it is not.
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(axum::http::header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let refused = || {
            ApiError::invalid_field(
                "If-Match",
                "must be one ETag this API sent (e.g. \"12\") or *",
            )
        };
        let text = value.to_str().map_err(|_| refused())?.trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        let tag = text.strip_prefix("W/").unwrap_or(text);
        tag.strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .map(|v| IfMatch(Some(v)))
            .ok_or_else(refused)
    }
}

/// The `ETag` of a resource at `version` (its last event's sequence): strong, since two
/// answers for one version are the same resource.
pub fn etag(version: i64) -> [(axum::http::HeaderName, axum::http::HeaderValue); 1] {
    let value = axum::http::HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("\"0\""));
    [(axum::http::header::ETAG, value)]
}
