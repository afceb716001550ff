//! `?as_of=` on `GET /v1/records/{id}` and `GET /v1/integrations/{id}`: the resource as it
//! was at an instant, folded from the prefix of its events recorded by then (the rule is
//! in `syncledger_store::history`). Before the resource's first event it did not exist
//! (404, as an unknown id); an instant in the future gives the current state.

use crate::error::{ApiError, ApiResult};
use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AsOf {
    /// An RFC 3339 instant (e.g. `2024-05-01T12:00:00.123456Z`): the state at that instant.
    pub as_of: Option<String>,
}

impl AsOf {
    /// The instant asked for, if any; a malformed one is 400 naming `as_of`.
    pub fn instant(&self) -> ApiResult<Option<DateTime<Utc>>> {
        self.as_of
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::invalid_field(
                            "as_of",
                            "must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z",
                        )
                    })
            })
            .transpose()
    }
}
