//! Field mappings: CRM field ↔ app field per integration and entity, with a direction
//! per field and an optional CEL transform on the way in; filters that decide which
//! records sync; default mappings per provider and auto-mapping by name.
//!
//! Transforms apply when pulling (CRM → app). Pushing sends the app's value unchanged:
//! a transform is not generally invertible, so guessing its inverse would corrupt data.

use std::collections::BTreeMap;

use syncledger_crm::{FieldInfo, RemoteRecord};
use syncledger_domain::integration::{FieldMapping, MappingDirection};
use syncledger_domain::merge::Fields;
use syncledger_domain::Entity;

use crate::transform::{Expression, TransformError, TIME_LIMIT};

/// A mapping that cannot be used, naming the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mapping {index} ({crm_field} → {app_field}): {error}")]
pub struct MappingError {
    pub index: usize,
    pub crm_field: String,
    pub app_field: String,
    pub error: TransformError,
}

#[derive(Clone, Debug)]
struct Rule {
    crm_field: String,
    app_field: String,
    direction: MappingDirection,
    transform: Option<Expression>,
}

/// Mappings of one integration and entity, compiled once per run.
#[derive(Clone, Debug, Default)]
pub struct Mapper {
    rules: Vec<Rule>,
    filter: Option<Expression>,
}

/// One record mapped for the app, or why it is left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapped {
    Fields(Fields),
    /// The filter said no.
    Filtered,
}

impl Mapper {
    pub fn compile(
        mappings: &[FieldMapping],
        filter: Option<&str>,
    ) -> Result<Mapper, MappingError> {
        let mut rules = Vec::with_capacity(mappings.len());
        for (index, m) in mappings.iter().enumerate() {
            let transform = match m.transform.as_deref().filter(|t| !t.trim().is_empty()) {
                Some(source) => {
                    Some(Expression::compile(source).map_err(|error| MappingError {
                        index,
                        crm_field: m.crm_field.clone(),
                        app_field: m.app_field.clone(),
                        error,
                    })?)
                }
                None => None,
            };
            rules.push(Rule {
                crm_field: m.crm_field.clone(),
                app_field: m.app_field.clone(),
                direction: m.direction,
                transform,
            });
        }
        let filter = match filter.filter(|f| !f.trim().is_empty()) {
            Some(source) => Some(Expression::compile(source).map_err(|error| MappingError {
                index: mappings.len(),
                crm_field: "filter".into(),
                app_field: "filter".into(),
                error,
            })?),
            None => None,
        };
        Ok(Mapper { rules, filter })
    }

    /// The app's view of a CRM record: pulled fields only, transformed.
    pub fn to_app(&self, record: &RemoteRecord) -> Result<Mapped, MappingError> {
        let crm: &Fields = &record.properties;
        // One time limit for the whole record, filter and transforms together.
        let deadline = std::time::Instant::now() + TIME_LIMIT;
        if let Some(filter) = &self.filter {
            let keep = filter
                .matches_until(crm, deadline)
                .map_err(|error| MappingError {
                    index: self.rules.len(),
                    crm_field: "filter".into(),
                    app_field: "filter".into(),
                    error,
                })?;
            if !keep {
                return Ok(Mapped::Filtered);
            }
        }
        let mut out = Fields::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if !matches!(
                rule.direction,
                MappingDirection::Pull | MappingDirection::Both
            ) {
                continue;
            }
            // A field the provider did not send is unknown, not null.
            let Some(value) = crm.get(&rule.crm_field) else {
                continue;
            };
            let value = match &rule.transform {
                Some(t) => t
                    .apply_until(value.as_deref(), crm, deadline)
                    .map_err(|error| MappingError {
                        index,
                        crm_field: rule.crm_field.clone(),
                        app_field: rule.app_field.clone(),
                        error,
                    })?,
                None => value.clone(),
            };
            out.insert(rule.app_field.clone(), value);
        }
        Ok(Mapped::Fields(out))
    }

    /// The CRM properties for app values: pushed fields only.
    pub fn to_crm(&self, app: &Fields) -> Fields {
        self.rules
            .iter()
            .filter(|r| matches!(r.direction, MappingDirection::Push | MappingDirection::Both))
            .filter_map(|r| {
                app.get(&r.app_field)
                    .map(|v| (r.crm_field.clone(), v.clone()))
            })
            .collect()
    }

    /// The subset of `app` values that some rule pushes to the CRM.
    pub fn pushable(&self, app: &Fields) -> Fields {
        app.iter()
            .filter(|(name, _)| self.push_rule(name).is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The CRM field an app field is pushed to, if a rule pushes it.
    pub fn push_rule(&self, app_field: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| {
                r.app_field == app_field
                    && matches!(r.direction, MappingDirection::Push | MappingDirection::Both)
            })
            .map(|r| r.crm_field.as_str())
    }

    /// App fields this mapping fills from the CRM.
    pub fn pulled_app_fields(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .filter(|r| matches!(r.direction, MappingDirection::Pull | MappingDirection::Both))
            .map(|r| r.app_field.as_str())
    }
}

/// The app's standard fields per entity.
pub fn app_fields(entity: Entity) -> &'static [&'static str] {
    match entity {
        Entity::Contacts => &[
            "email",
            "first_name",
            "last_name",
            "phone",
            "title",
            "company",
        ],
        Entity::Companies => &["name", "domain", "phone", "industry", "city"],
    }
}

fn both(crm: &str, app: &str) -> FieldMapping {
    FieldMapping {
        crm_field: crm.into(),
        app_field: app.into(),
        direction: MappingDirection::Both,
        transform: None,
    }
}

fn pull(crm: &str, app: &str) -> FieldMapping {
    FieldMapping {
        direction: MappingDirection::Pull,
        ..both(crm, app)
    }
}

fn push(crm: &str, app: &str) -> FieldMapping {
    FieldMapping {
        direction: MappingDirection::Push,
        ..both(crm, app)
    }
}

/// Strips the scheme, `www.` and any path from a website: what companies match on.
pub const DOMAIN_FROM_WEBSITE: &str = "value == null ? null : value.lowerAscii().replace('https://', '').replace('http://', '').replace('www.', '').split('/')[0]";

/// The mappings and filter an integration uses for an entity: its own, else the
/// provider's defaults (no filter).
pub fn effective_mappings(
    integration: &syncledger_domain::Integration,
    entity: Entity,
) -> (Vec<FieldMapping>, Option<String>) {
    match integration.mappings_for(entity) {
        Some((mappings, filter)) => (mappings.to_vec(), filter.map(str::to_owned)),
        None => (default_mappings(&integration.provider, entity), None),
    }
}

/// The mappings an integration starts with.
pub fn default_mappings(provider: &str, entity: Entity) -> Vec<FieldMapping> {
    match (provider, entity) {
        ("hubspot", Entity::Contacts) => vec![
            both("email", "email"),
            both("firstname", "first_name"),
            both("lastname", "last_name"),
            both("phone", "phone"),
            both("jobtitle", "title"),
            both("company", "company"),
        ],
        ("hubspot", Entity::Companies) => vec![
            both("name", "name"),
            both("domain", "domain"),
            both("phone", "phone"),
            both("industry", "industry"),
            both("city", "city"),
        ],
        ("salesforce", Entity::Contacts) => vec![
            both("Email", "email"),
            both("FirstName", "first_name"),
            both("LastName", "last_name"),
            both("Phone", "phone"),
            both("Title", "title"),
        ],
        ("salesforce", Entity::Companies) => vec![
            both("Name", "name"),
            FieldMapping {
                crm_field: "Website".into(),
                app_field: "domain".into(),
                direction: MappingDirection::Pull,
                transform: Some(DOMAIN_FROM_WEBSITE.into()),
            },
            both("Phone", "phone"),
            both("Industry", "industry"),
            both("BillingCity", "city"),
        ],
        ("pipedrive", Entity::Contacts) => vec![
            both("email", "email"),
            both("first_name", "first_name"),
            both("last_name", "last_name"),
            both("phone", "phone"),
        ],
        ("pipedrive", Entity::Companies) => vec![both("name", "name"), both("address", "city")],
        ("zoho", Entity::Contacts) => vec![
            both("Email", "email"),
            both("First_Name", "first_name"),
            both("Last_Name", "last_name"),
            both("Phone", "phone"),
            both("Title", "title"),
        ],
        ("zoho", Entity::Companies) => vec![
            both("Account_Name", "name"),
            FieldMapping {
                crm_field: "Website".into(),
                app_field: "domain".into(),
                direction: MappingDirection::Pull,
                transform: Some(DOMAIN_FROM_WEBSITE.into()),
            },
            both("Phone", "phone"),
            both("Industry", "industry"),
            both("Billing_City", "city"),
        ],
        // The shipped templates' field names (adapters/crm/templates). Chatwoot keeps
        // one name per contact: it goes to the first name.
        ("chatwoot", Entity::Contacts) => vec![
            both("email", "email"),
            both("name", "first_name"),
            both("phone", "phone"),
            both("company_name", "company"),
        ],
        ("chatwoot", Entity::Companies) => vec![both("name", "name"), both("domain", "domain")],
        ("tave", Entity::Contacts) => vec![
            both("email", "email"),
            both("first_name", "first_name"),
            both("last_name", "last_name"),
            both("phone", "phone"),
        ],
        ("tave", Entity::Companies) => vec![both("name", "name"), both("phone", "phone")],
        // A CRM without an API: the column (or JSON field) names of a typical export;
        // pull only, as nothing is ever written to it.
        (p, Entity::Contacts) if syncledger_domain::provider::publishes_no_api(p) => [
            ("email", "email"),
            ("first_name", "first_name"),
            ("last_name", "last_name"),
            ("phone", "phone"),
            ("company", "company"),
        ]
        .into_iter()
        .map(|(crm, app)| pull(crm, app))
        .collect(),
        (p, Entity::Companies) if syncledger_domain::provider::publishes_no_api(p) => {
            vec![
                pull("name", "name"),
                pull("domain", "domain"),
                pull("phone", "phone"),
            ]
        }
        // Write-only: the vendors' lead parameters, pushed only.
        ("lightblue", Entity::Contacts) => vec![
            push("ContactEmail", "email"),
            push("ContactNameFirst", "first_name"),
            push("ContactNameLast", "last_name"),
            push("ContactPhoneMobile", "phone"),
            push("ContactSource", "source"),
            push("Message", "message"),
        ],
        ("shootq", Entity::Contacts) => vec![
            push("email", "email"),
            push("first_name", "first_name"),
            push("last_name", "last_name"),
            push("phone", "phone"),
            push("company_name", "company"),
            push("additional_comments", "message"),
        ],
        _ => Vec::new(),
    }
}

/// Letters and digits only, lower case: `FirstName`, `first_name` and `First name`
/// compare equal.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Maps each app field to the CRM field of the same normalized name, both ways when the
/// CRM field is writable, pull only otherwise. App fields without a match stay unmapped.
pub fn auto_map(crm_fields: &[FieldInfo], app_fields: &[&str]) -> Vec<FieldMapping> {
    let by_name: BTreeMap<String, &FieldInfo> =
        crm_fields.iter().map(|f| (normalize(&f.name), f)).collect();
    app_fields
        .iter()
        .filter_map(|app| {
            let crm = by_name.get(&normalize(app))?;
            Some(FieldMapping {
                crm_field: crm.name.clone(),
                app_field: (*app).to_owned(),
                direction: if crm.writable {
                    MappingDirection::Both
                } else {
                    MappingDirection::Pull
                },
                transform: None,
            })
        })
        .collect()
}

/// Required CRM fields that no push mapping fills: creating a record there would fail.
pub fn unmapped_required(crm_fields: &[FieldInfo], mappings: &[FieldMapping]) -> Vec<String> {
    crm_fields
        .iter()
        .filter(|f| f.required && f.writable)
        .filter(|f| {
            !mappings.iter().any(|m| {
                m.crm_field == f.name
                    && matches!(m.direction, MappingDirection::Push | MappingDirection::Both)
            })
        })
        .map(|f| f.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn remote(props: &[(&str, Option<&str>)]) -> RemoteRecord {
        RemoteRecord {
            id: "1".into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            archived: false,
        }
    }

    fn field(name: &str, required: bool, writable: bool) -> FieldInfo {
        FieldInfo {
            name: name.into(),
            label: name.into(),
            field_type: "string".into(),
            required,
            writable,
        }
    }

    #[test]
    fn pulls_map_transform_and_skip_what_the_provider_did_not_send() {
        let mut mappings = default_mappings("hubspot", Entity::Contacts);
        mappings[0].transform = Some("value.lowerAscii()".into());
        let mapper = Mapper::compile(&mappings, None).expect("compiles");
        let mapped = mapper
            .to_app(&remote(&[
                ("email", Some("Ada@X.io")),
                ("firstname", Some("Ada")),
                ("phone", None),
            ]))
            .expect("maps");
        let expected: Fields = [
            ("email", Some("ada@x.io")),
            ("first_name", Some("Ada")),
            ("phone", None),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect();
        assert_eq!(mapped, Mapped::Fields(expected));
    }

    #[test]
    fn directions_decide_what_is_pulled_and_pushed() {
        let mut mappings = default_mappings("salesforce", Entity::Companies);
        mappings.push(FieldMapping {
            crm_field: "Secret__c".into(),
            app_field: "secret".into(),
            direction: MappingDirection::None,
            transform: None,
        });
        let mapper = Mapper::compile(&mappings, None).expect("compiles");
        let Mapped::Fields(app) = mapper
            .to_app(&remote(&[
                ("Name", Some("Acme")),
                ("Website", Some("https://www.Acme.com/about")),
                ("Secret__c", Some("x")),
            ]))
            .expect("maps")
        else {
            panic!("not filtered");
        };
        assert_eq!(app.get("domain"), Some(&Some("acme.com".to_string())));
        assert!(!app.contains_key("secret"));
        let crm = mapper.to_crm(&app);
        assert_eq!(crm.get("Name"), Some(&Some("Acme".to_string())));
        assert!(
            !crm.contains_key("Website"),
            "pull-only fields are not pushed"
        );
        assert!(!crm.contains_key("Secret__c"));
    }

    #[test]
    fn filters_leave_records_out_and_bad_expressions_name_their_rule() {
        let mappings = default_mappings("hubspot", Entity::Contacts);
        let mapper = Mapper::compile(&mappings, Some("record.lifecyclestage == 'customer'"))
            .expect("compiles");
        let lead = remote(&[("lifecyclestage", Some("lead")), ("email", Some("a@x.io"))]);
        assert_eq!(mapper.to_app(&lead), Ok(Mapped::Filtered));
        let mut broken = mappings.clone();
        broken[2].transform = Some("value +".into());
        let error = Mapper::compile(&broken, None).expect_err("refused");
        assert_eq!((error.index, error.crm_field.as_str()), (2, "lastname"));
    }

    #[test]
    fn auto_mapping_matches_names_and_respects_writability() {
        let crm = [
            field("FirstName", true, true),
            field("E_mail", false, true),
            field("Email", false, false),
            field("Fax", false, true),
        ];
        let mapped = auto_map(&crm, &["first_name", "email", "phone"]);
        assert_eq!(mapped.len(), 2);
        assert_eq!(
            (mapped[0].crm_field.as_str(), mapped[0].direction),
            ("FirstName", MappingDirection::Both)
        );
        // `E_mail` and `Email` normalize alike; the last one listed wins the name.
        assert_eq!(
            (mapped[1].crm_field.as_str(), mapped[1].direction),
            ("Email", MappingDirection::Pull)
        );
        let required = unmapped_required(
            &[
                field("LastName", true, true),
                field("FirstName", true, true),
            ],
            &mapped,
        );
        assert_eq!(required, ["LastName"]);
    }

    #[test]
    fn every_default_mapping_compiles_and_fills_the_match_key() {
        for provider in ["hubspot", "salesforce", "pipedrive", "zoho"] {
            for entity in [Entity::Contacts, Entity::Companies] {
                let mappings = default_mappings(provider, entity);
                let mapper = Mapper::compile(&mappings, None).expect("compiles");
                if !(provider == "pipedrive" && entity == Entity::Companies) {
                    assert!(
                        mapper
                            .pulled_app_fields()
                            .any(|f| f == entity.match_field()),
                        "{provider} {entity:?}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        /// Without transforms, pushing what was pulled gives back the CRM's values for
        /// every two-way field, and nothing for one-way fields.
        #[test]
        fn a_pull_then_a_push_round_trips_two_way_fields(
            values in proptest::collection::vec(proptest::option::of("[a-zA-Z0-9@. ]{0,12}"), 6),
            directions in proptest::collection::vec(0u8..4, 6),
        ) {
            let names = ["email", "firstname", "lastname", "phone", "jobtitle", "company"];
            let mut mappings = default_mappings("hubspot", Entity::Contacts);
            for (m, d) in mappings.iter_mut().zip(&directions) {
                m.direction = match d {
                    0 => MappingDirection::Pull,
                    1 => MappingDirection::Push,
                    2 => MappingDirection::Both,
                    _ => MappingDirection::None,
                };
            }
            let mapper = Mapper::compile(&mappings, None).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let props: Vec<(&str, Option<&str>)> = names.iter().copied().zip(values.iter().map(|v| v.as_deref())).collect();
            let Mapped::Fields(app) = mapper.to_app(&remote(&props)).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))? else {
                return Err(proptest::test_runner::TestCaseError::fail("filtered without a filter"));
            };
            let back = mapper.to_crm(&app);
            for (m, (name, value)) in mappings.iter().zip(names.iter().zip(&values)) {
                match m.direction {
                    MappingDirection::Both => proptest::prop_assert_eq!(back.get(*name), Some(value)),
                    _ => proptest::prop_assert!(!back.contains_key(*name)),
                }
            }
        }
    }
}
