//! The specs shipped in the binary for catalogue providers that need no spec of
//! their own (an integration may still give one, which replaces the template).

use super::spec::CustomSpec;
use crate::error::CrmError;

const CHATWOOT: &str = include_str!("../../templates/chatwoot.toml");
const TAVE: &str = include_str!("../../templates/tave.toml");

/// The TOML of the template shipped for `provider`, if any.
pub fn template_text(provider: &str) -> Option<&'static str> {
    match provider {
        "chatwoot" => Some(CHATWOOT),
        "tave" => Some(TAVE),
        _ => None,
    }
}

/// The template shipped for `provider`, parsed (its connection parameters unbound).
pub fn template(provider: &str) -> Option<Result<CustomSpec, CrmError>> {
    template_text(provider).map(CustomSpec::from_toml)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::custom::Scan;
    use syncledger_domain::Entity;

    #[test]
    fn every_shipped_template_parses_and_binds() -> Result<(), CrmError> {
        let chatwoot = template("chatwoot").ok_or(CrmError::Config("none".into()))??;
        let bound = chatwoot.bind(&BTreeMap::from([("account_id".into(), "42".into())]))?;
        bound.validate()?;
        let contacts = bound.entity(Entity::Contacts);
        assert_eq!(
            contacts.map(|c| c.list.path.as_str()),
            Some("/api/v1/accounts/42/contacts")
        );
        assert_eq!(contacts.map(|c| c.scan), Some(Scan::Full {}));
        let tave = template("tave").ok_or(CrmError::Config("none".into()))??;
        tave.bind(&BTreeMap::new())?.validate()?;
        assert!(template("hubspot").is_none());
        Ok(())
    }

    /// The templates' notes are what users read of a provider's limits: they name the
    /// webhook receivers the server has (they once said the webhooks were not received).
    #[test]
    fn the_notes_point_at_the_webhook_receivers() -> Result<(), CrmError> {
        for (provider, receiver) in [
            ("chatwoot", "/v1/webhooks/chatwoot/{id}"),
            ("tave", "/v1/integrations/{id}/hook-url"),
        ] {
            let spec = template(provider).ok_or(CrmError::Config("none".into()))??;
            assert!(
                spec.notes.iter().any(|n| n.contains(receiver)),
                "{provider}: {:?}",
                spec.notes
            );
            assert!(
                !spec.notes.iter().any(|n| n.contains("not received")),
                "{provider}: {:?}",
                spec.notes
            );
        }
        Ok(())
    }

    #[test]
    fn parameters_are_required_declared_and_of_their_format() -> Result<(), CrmError> {
        let chatwoot = template("chatwoot").ok_or(CrmError::Config("none".into()))??;
        let refused = |values: &[(&str, &str)]| {
            let values = values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            match chatwoot.bind(&values) {
                Err(CrmError::Refused { field, .. }) => field,
                other => format!("not refused: {other:?}"),
            }
        };
        assert_eq!(refused(&[]), "parameters.account_id");
        for hostile in [
            "1/../../x",
            "42?x=1",
            "",
            "١٢",
            "4 2",
            "1234567890123456789",
        ] {
            assert_eq!(refused(&[("account_id", hostile)]), "parameters.account_id");
        }
        assert_eq!(
            refused(&[("account_id", "1"), ("inbox", "2")]),
            "parameters.inbox"
        );
        Ok(())
    }

    fn problems(toml: &str) -> String {
        match CustomSpec::from_toml(toml) {
            Err(e) => e.to_string(),
            Ok(_) => "accepted".into(),
        }
    }

    const BASE: &str = r#"
base_url = "https://crm.example"
[auth]
type = "api_key"
header = "X-Key"
[contacts.list]
path = "/people"
id_path = "id"
"#;

    #[test]
    fn the_new_spec_features_are_checked_with_their_paths() {
        let cases = [
            ("", "contacts.list.updated_at_path: required unless scan.type is `full`"),
            (
                "[contacts.scan]\ntype = \"descending\"\n[contacts.updated_since]\nparam = \"since\"",
                "contacts.updated_since: applies only to the default scan",
            ),
            (
                "[contacts.scan]\ntype = \"full\"\n[contacts.write]\nupdate = { method = \"PUT\", path = \"/people/{id}\", read_modify_write = true }",
                "contacts.write.update.read_modify_write: needs the entity's `read` endpoint",
            ),
            (
                "[contacts.scan]\ntype = \"full\"\n[contacts.read]\npath = \"/people\"",
                "contacts.read.path: must contain `{id}`",
            ),
            (
                "[contacts.scan]\ntype = \"full\"\n[contacts.read]\npath = \"/a/{account}/people/{id}\"",
                "contacts.read.path: `{account}` is not a declared parameter",
            ),
        ];
        for (extra, needle) in cases {
            let text = format!("{BASE}{extra}");
            let found = problems(&text);
            assert!(found.contains(needle), "{needle} not in {found}");
        }
        let full = format!("{BASE}[contacts.scan]\ntype = \"full\"");
        assert_eq!(problems(&full), "accepted");
    }

    proptest::proptest! {
        /// Whatever a tenant gives as `account_id`, the bound paths gain only digits:
        /// no segment, query, fragment or host of the tenant's choosing.
        #[test]
        fn a_bound_parameter_adds_only_digits(value in "\\PC{0,24}") {
            let chatwoot = template("chatwoot").and_then(Result::ok);
            proptest::prop_assume!(chatwoot.is_some());
            let Some(chatwoot) = chatwoot else { return Ok(()) };
            let values = BTreeMap::from([("account_id".to_owned(), value.clone())]);
            match chatwoot.bind(&values) {
                Ok(bound) => {
                    proptest::prop_assert!(!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()));
                    let path = bound.entity(Entity::Contacts).map(|c| c.list.path.clone());
                    proptest::prop_assert_eq!(path, Some(format!("/api/v1/accounts/{value}/contacts")));
                    proptest::prop_assert!(bound.validate().is_ok());
                }
                Err(CrmError::Refused { field, .. }) => {
                    proptest::prop_assert_eq!(field, "parameters.account_id");
                }
                Err(other) => proptest::prop_assert!(false, "{other}"),
            }
        }
    }
}
