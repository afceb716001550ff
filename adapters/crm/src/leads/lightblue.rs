//! Light Blue's API (`POST {base}/api.php`): UTF-8 form fields `key`, `type=contact
//! form` and the lead's parameters; the answer is a numeric status, then a summary of
//! the error if there was one.
//!
//! The duplicate check (-4) applies only when an `ID` (or `Reference`) is given. The
//! vendor's "advanced parameters" page documents `ID` as checked for uniqueness
//! together with `Source` (so that different senders' IDs do not clash): each lead
//! carries `ID` = the app record's id and `Source` = `syncledger`.
//!
//! The summary after the status is not shown: it is the vendor's text, and a hostile or
//! broken host could echo the key in it; the status code says enough.

use async_trait::async_trait;

use super::{api_key, Lead, LeadsConfig, Undelivered, Vendor};
use crate::error::CrmError;
use crate::http::{Executor, Lane};
use crate::types::{Credentials, Identity};

/// What the lead's `Source` says: with `ID`, the key of the vendor's duplicate check.
pub const SOURCE: &str = "syncledger";

/// Form fields syncledger sets itself; a mapping cannot send them.
const RESERVED: &[&str] = &["key", "type", "ID", "Reference", "Source"];

/// Light Blue's contact-form parameters (vendor's "Supported API parameters").
const PARAMETERS: &[(&str, &str, bool)] = &[
    ("Message", "Message", false),
    ("ContactNameFull", "Contact full name", false),
    ("ContactNameFirst", "Contact first name", false),
    ("ContactNameLast", "Contact last name", false),
    ("ContactTitle", "Contact title", false),
    ("ContactSource", "Contact source", false),
    ("ContactTag", "Contact tag", false),
    ("ContactEmail", "Contact email", false),
    ("ContactPhoneMobile", "Contact mobile phone", false),
    ("ContactPhoneHome", "Contact home phone", false),
    ("ContactPhoneWork", "Contact work phone", false),
    ("ContactWebsite", "Contact website", false),
];

/// Light Blue, reached at `config.base_url`.
#[derive(Debug)]
pub struct LightBlue {
    base_url: String,
    http: Executor,
}

impl LightBlue {
    pub fn new(mut config: LeadsConfig) -> Result<Self, CrmError> {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        let http = config.executor("lightblue", Some(classify))?;
        Ok(Self {
            base_url: config.base_url,
            http,
        })
    }
}

/// A client error from Light Blue (it answers statuses in a 200 body, so a 4xx comes
/// from something in between): its status only, never its text, which could echo the
/// form and with it the key.
fn classify(status: reqwest::StatusCode, _: &[u8]) -> Option<CrmError> {
    let code = status.as_u16();
    (status.is_client_error() && code != 401 && code != 429).then(|| CrmError::Rejected {
        status: code,
        category: String::new(),
        message: String::new(),
    })
}

/// The form body of `lead` sent with `key`: `key`, `type`, the lead's parameters (in
/// name order, reserved names left out), `Source` and `ID`.
pub fn form_body(key: &str, lead: &Lead) -> Result<String, CrmError> {
    let mut pairs: Vec<(&str, &str)> = vec![("key", key), ("type", "contact form")];
    pairs.extend(
        lead.fields
            .iter()
            .filter(|(name, _)| !RESERVED.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    pairs.push(("Source", SOURCE));
    pairs.push(("ID", &lead.reference));
    serde_urlencoded::to_string(&pairs)
        .map_err(|_| CrmError::Config("a lead could not be form-encoded".into()))
}

/// What a numeric status means for the lead: `Ok` when it is delivered (0, or -4: a
/// duplicate of one already received), else the reason it was not.
pub fn status_outcome(code: i64) -> Result<(), String> {
    let reason = match code {
        0 | -4 => return Ok(()),
        -20 => "Light Blue refused the lead (status -20): its API must be called over HTTPS",
        -3 => {
            "Light Blue refused the lead (status -3): no parameter valid for a contact form \
             (or an invalid request type)"
        }
        other => return Err(format!("Light Blue refused the lead (status {other})")),
    };
    Err(reason.to_owned())
}

/// The status at the start of Light Blue's answer (`0`, `-4`, `-3 some summary`).
pub fn parse_status(body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?.trim_start();
    let end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(text.len(), |(i, _)| i);
    text.get(..end)?.parse().ok()
}

#[async_trait]
impl Vendor for LightBlue {
    fn id(&self) -> &'static str {
        "lightblue"
    }

    fn name(&self) -> &'static str {
        "Light Blue"
    }

    fn http(&self) -> &Executor {
        &self.http
    }

    fn parameters(&self) -> &'static [(&'static str, &'static str, bool)] {
        PARAMETERS
    }

    async fn deliver(&self, credentials: &Credentials, lead: &Lead) -> Result<(), Undelivered> {
        let body = form_body(api_key(credentials, self.name())?, lead)?;
        let url = format!("{}/api.php", self.base_url);
        let reply = self
            .http
            .send_raw_non_idempotent(Lane::General, |c| {
                c.post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded; charset=UTF-8",
                    )
                    .body(body.clone())
            })
            .await?;
        let bytes = reply.body.unwrap_or_default();
        let Some(code) = parse_status(&bytes) else {
            return Err(Undelivered::Refused(
                "Light Blue answered without a numeric status".into(),
            ));
        };
        status_outcome(code).map_err(Undelivered::Refused)
    }

    /// Light Blue has no call that checks a key without sending a lead: the key is
    /// checked by the first lead sent.
    async fn check(&self, credentials: &Credentials) -> Result<Identity, CrmError> {
        api_key(credentials, self.name())?;
        Ok(Identity {
            account_id: "inbox (key checked by the first lead sent)".into(),
            user: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn statuses_map_to_per_record_results() {
        assert_eq!(status_outcome(0), Ok(()));
        assert_eq!(
            status_outcome(-4),
            Ok(()),
            "a duplicate is already delivered"
        );
        for (code, needle) in [(-3, "status -3"), (-20, "HTTPS"), (-7, "status -7")] {
            let reason = status_outcome(code).err().unwrap_or_default();
            assert!(reason.contains(needle), "{code}: {reason}");
        }
        assert!(status_outcome(1).is_err());
    }

    #[test]
    fn statuses_are_read_from_the_start_of_the_answer() {
        for (body, code) in [
            ("0", Some(0)),
            ("-4", Some(-4)),
            (" -3 Invalid request type\n", Some(-3)),
            ("-20: use HTTPS", Some(-20)),
            ("", None),
            ("-", None),
            ("OK", None),
            ("--3", None),
            ("99999999999999999999999", None),
        ] {
            assert_eq!(parse_status(body.as_bytes()), code, "{body:?}");
        }
        assert_eq!(parse_status(&[0xff, 0xfe]), None);
    }

    #[test]
    fn the_form_has_the_key_the_type_and_the_reference() -> Result<(), CrmError> {
        let lead = Lead {
            fields: BTreeMap::from([
                ("ContactNameFirst".into(), "Zoë & Co".into()),
                ("key".into(), "stolen".into()),
            ]),
            reference: "rec-1".into(),
        };
        let body = form_body("k=1&x", &lead)?;
        assert_eq!(
            body,
            "key=k%3D1%26x&type=contact+form&ContactNameFirst=Zo%C3%AB+%26+Co&Source=syncledger&ID=rec-1"
        );
        Ok(())
    }

    proptest::proptest! {
        /// Whatever a record holds, its form body decodes to exactly the fields sent:
        /// the key and type first, each parameter once, the reference last.
        #[test]
        fn any_record_makes_a_form_that_round_trips(
            key in "\\PC{1,40}",
            fields in proptest::collection::btree_map("[A-Za-z]{1,12}", "\\PC{1,40}", 0..8),
            reference in "[0-9a-f-]{1,36}",
        ) {
            let lead = Lead { fields: fields.clone(), reference: reference.clone() };
            let body = form_body(&key, &lead);
            proptest::prop_assert!(body.is_ok());
            let body = body.unwrap_or_default();
            let decoded: Vec<(String, String)> = serde_urlencoded::from_str(&body)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let mut expected = vec![("key".to_owned(), key), ("type".to_owned(), "contact form".to_owned())];
            expected.extend(fields.into_iter().filter(|(k, _)| !RESERVED.contains(&k.as_str())));
            expected.push(("Source".into(), SOURCE.into()));
            expected.push(("ID".into(), reference));
            proptest::prop_assert_eq!(decoded, expected);
        }
    }
}
