//! ShootQ's contact-form API: `GET {base}/api/v1/contactform/contactformtemplate/
//! <form_link_code>/view/` answers the form's `{id, …}`; each lead is then `POST {base}/
//! api/v1/contactform/contactformtemplate/<id>/submit/` with a JSON object
//! (`first_name`, `last_name`, `email`, `phone`, …), answered 200 or with an error dict
//! (`{"email": ["This field is required."]}`). No authentication beyond the form's
//! public link code, which the integration holds as its key.
//!
//! The form's id is kept for a few minutes (a run's leads view the form once) and
//! forgotten when a submit answers 404 (the form was replaced).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::{api_key, without, Lead, LeadsConfig, Undelivered, Vendor};
use crate::error::CrmError;
use crate::http::{Executor, Lane};
use crate::types::{Credentials, Identity};

/// How long a form's id is reused.
const FORM_ID_LIFETIME: Duration = Duration::from_secs(300);

/// The submit body's fields (vendor's "Contact Form API").
const PARAMETERS: &[(&str, &str, bool)] = &[
    ("first_name", "First name", false),
    ("last_name", "Last name", false),
    ("email", "Email", true),
    ("phone", "Phone", false),
    ("additional_comments", "Additional comments", false),
    ("company_name", "Company name", false),
    ("event_date", "Event date (YYYY-MM-DDTHH:mm±HH:mm)", false),
    ("event_location", "Event location", false),
    ("url", "URL", false),
    ("job_role", "Job role", false),
    ("job_type", "Job type", false),
    ("referral_type", "Referral type", false),
];

/// A form id as it was read, and when.
#[derive(Debug)]
struct Form {
    code: String,
    id: String,
    at: Instant,
}

/// ShootQ, reached at `config.base_url` (`https://api.shootq.com`).
#[derive(Debug)]
pub struct ShootQ {
    base_url: String,
    http: Executor,
    form: Mutex<Option<Form>>,
}

impl ShootQ {
    pub fn new(mut config: LeadsConfig) -> Result<Self, CrmError> {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        let http = config.executor("shootq", Some(classify))?;
        Ok(Self {
            base_url: config.base_url,
            http,
            form: Mutex::new(None),
        })
    }

    fn templates(&self) -> String {
        format!("{}/api/v1/contactform/contactformtemplate", self.base_url)
    }

    /// The form's id: kept, or viewed now.
    async fn form_id(&self, code: &str) -> Result<String, CrmError> {
        if let Some(form) = self
            .form
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if form.code == code && form.at.elapsed() < FORM_ID_LIFETIME {
                return Ok(form.id.clone());
            }
        }
        let url = format!("{}/{code}/view/", self.templates());
        let reply = self
            .http
            .send::<Value>(Lane::General, |c| c.get(&url))
            .await?;
        let id = reply
            .body
            .as_ref()
            .and_then(|b| b.get("id"))
            .and_then(path_segment)
            .ok_or_else(|| CrmError::Malformed("the contact form has no usable id".into()))?;
        *self.form.lock().unwrap_or_else(PoisonError::into_inner) = Some(Form {
            code: code.to_owned(),
            id: id.clone(),
            at: Instant::now(),
        });
        Ok(id)
    }

    fn forget_form(&self) {
        *self.form.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The form link code of these credentials: it goes into a path, so only letters,
/// digits, `-` and `_`, 1 to 64 of them.
fn form_code(credentials: &Credentials) -> Result<&str, CrmError> {
    let code = api_key(credentials, "ShootQ")?;
    if is_segment(code) {
        Ok(code)
    } else {
        Err(CrmError::Config(
            "the ShootQ form link code must be 1 to 64 letters, digits, '-' or '_'".into(),
        ))
    }
}

/// The same rule for the form's id the provider sends back as for its link code.
fn is_segment(s: &str) -> bool {
    syncledger_domain::provider::is_form_link_code(s)
}

/// A form id the provider sent, if it is safe in a path (a number or a plain slug).
fn path_segment(id: &Value) -> Option<String> {
    let id = match id {
        Value::Number(n) => n.as_u64()?.to_string(),
        Value::String(s) if is_segment(s) => s.clone(),
        _ => return None,
    };
    Some(id)
}

/// The words of an error dict: `{"email": ["This field is required."]}` and
/// `{"detail": "Not found."}` read `email: This field is required.` and `Not found.`.
pub fn error_dict_text(body: &[u8]) -> Option<String> {
    let Ok(Value::Object(dict)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let words = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or("invalid"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "invalid".into(),
    };
    let text = dict
        .iter()
        .map(|(field, v)| match field.as_str() {
            "detail" | "non_field_errors" => words(v),
            _ => format!("{field}: {}", words(v)),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(text)
}

/// Client errors (not 401 or 429) carrying an error dict become `Rejected` with its
/// words.
fn classify(status: StatusCode, body: &[u8]) -> Option<CrmError> {
    let code = status.as_u16();
    if !status.is_client_error() || code == 401 || code == 429 {
        return None;
    }
    Some(CrmError::Rejected {
        status: code,
        category: if code == 404 {
            "NOT_FOUND"
        } else {
            "VALIDATION_ERROR"
        }
        .into(),
        message: error_dict_text(body).unwrap_or_default(),
    })
}

#[async_trait]
impl Vendor for ShootQ {
    fn id(&self) -> &'static str {
        "shootq"
    }

    fn name(&self) -> &'static str {
        "ShootQ"
    }

    fn http(&self) -> &Executor {
        &self.http
    }

    fn parameters(&self) -> &'static [(&'static str, &'static str, bool)] {
        PARAMETERS
    }

    async fn deliver(&self, credentials: &Credentials, lead: &Lead) -> Result<(), Undelivered> {
        let code = form_code(credentials)?;
        let id = self.form_id(code).await?;
        let body: Map<String, Value> = lead
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let url = format!("{}/{id}/submit/", self.templates());
        let sent = self
            .http
            .send_raw_non_idempotent(Lane::General, |c| c.post(&url).json(&body))
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(CrmError::Rejected {
                status, message, ..
            }) => {
                if status == 404 {
                    self.forget_form();
                }
                let words = without(&message, code);
                Err(Undelivered::Refused(format!(
                    "ShootQ refused the lead ({status}): {words}"
                )))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Views the form: its id is what the integration reaches.
    async fn check(&self, credentials: &Credentials) -> Result<Identity, CrmError> {
        let id = self.form_id(form_code(credentials)?).await?;
        Ok(Identity {
            account_id: format!("contact form {id}"),
            user: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_dicts_read_as_their_words() {
        let text = |body: &str| error_dict_text(body.as_bytes());
        assert_eq!(
            text(r#"{"email": ["This field is required."]}"#).as_deref(),
            Some("email: This field is required.")
        );
        assert_eq!(
            text(r#"{"detail": "Not found.", "phone": [1]}"#).as_deref(),
            Some("Not found.; phone: invalid")
        );
        assert_eq!(text("<html>"), None);
        assert_eq!(text("[1]"), None);
    }

    #[test]
    fn only_plain_ids_go_into_paths() {
        assert_eq!(path_segment(&Value::from(42)), Some("42".into()));
        assert_eq!(path_segment(&Value::from("a-b_1")), Some("a-b_1".into()));
        for hostile in [
            Value::from("../admin"),
            Value::from("1?x=2"),
            Value::from(-1),
            Value::from(""),
            Value::Null,
            Value::from("x".repeat(65)),
        ] {
            assert_eq!(path_segment(&hostile), None, "{hostile}");
        }
    }
}
