//! The two sObjects served, and their field catalogue as `describe` reports it.

use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SObject {
    Account,
    Contact,
}

impl SObject {
    /// sObject names are case-insensitive in URLs and SOQL.
    pub fn parse(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("Account") {
            Some(Self::Account)
        } else if name.eq_ignore_ascii_case("Contact") {
            Some(Self::Contact)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Account => "Account",
            Self::Contact => "Contact",
        }
    }

    /// The three-character key prefix every id of this object starts with.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Self::Account => "001",
            Self::Contact => "003",
        }
    }

    pub fn fields(self) -> &'static [Field] {
        match self {
            Self::Account => ACCOUNT,
            Self::Contact => CONTACT,
        }
    }

    /// The field as declared, matched case-insensitively as Salesforce does.
    pub fn field(self, name: &str) -> Option<&'static Field> {
        self.fields()
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The field that must be set on create.
    pub fn required_field(self) -> &'static str {
        match self {
            Self::Account => "Name",
            Self::Contact => "LastName",
        }
    }

    /// Fields the upsert endpoint accepts as an external id. Real orgs need a
    /// field flagged External ID; the sandbox treats these unique fields so.
    pub fn external_id_field(self, name: &str) -> Option<&'static Field> {
        let allowed: &[&str] = match self {
            Self::Account => &["Id", "Website"],
            Self::Contact => &["Id", "Email"],
        };
        allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(name))
            .and_then(|a| self.field(a))
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: &'static str,
    pub length: u32,
    pub writable: bool,
    pub nillable: bool,
    pub defaulted: bool,
}

/// Fields the server maintains: readable, never written by clients.
const fn system(name: &'static str, label: &'static str, kind: &'static str, length: u32) -> Field {
    Field {
        name,
        label,
        kind,
        length,
        writable: false,
        nillable: false,
        defaulted: true,
    }
}

const fn text(name: &'static str, label: &'static str, kind: &'static str, length: u32) -> Field {
    Field {
        name,
        label,
        kind,
        length,
        writable: true,
        nillable: true,
        defaulted: false,
    }
}

const fn required(name: &'static str, label: &'static str, length: u32) -> Field {
    Field {
        name,
        label,
        kind: "string",
        length,
        writable: true,
        nillable: false,
        defaulted: false,
    }
}

const SYSTEM: [Field; 5] = [
    system("Id", "Record ID", "id", 18),
    system("IsDeleted", "Deleted", "boolean", 0),
    system("CreatedDate", "Created Date", "datetime", 0),
    system("LastModifiedDate", "Last Modified Date", "datetime", 0),
    system("SystemModstamp", "System Modstamp", "datetime", 0),
];

const ACCOUNT: &[Field] = &[
    SYSTEM[0],
    SYSTEM[1],
    required("Name", "Account Name", 255),
    text("Website", "Website", "url", 255),
    text("Industry", "Industry", "picklist", 255),
    text("Phone", "Account Phone", "phone", 40),
    text("BillingCity", "Billing City", "string", 40),
    text("Tier__c", "Tier", "picklist", 255),
    SYSTEM[2],
    SYSTEM[3],
    SYSTEM[4],
];

const CONTACT: &[Field] = &[
    SYSTEM[0],
    SYSTEM[1],
    text("FirstName", "First Name", "string", 40),
    required("LastName", "Last Name", 80),
    text("Email", "Email", "email", 80),
    text("Phone", "Business Phone", "phone", 40),
    text("AccountId", "Account ID", "reference", 18),
    text("Title", "Title", "string", 128),
    text("Tier__c", "Tier", "picklist", 255),
    SYSTEM[2],
    SYSTEM[3],
    SYSTEM[4],
];

/// `GET /sobjects/{S}/describe`: the parts clients read.
pub fn describe(object: SObject, base: &str) -> Value {
    let fields: Vec<Value> = object
        .fields()
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "label": f.label,
                "type": f.kind,
                "length": f.length,
                "updateable": f.writable,
                "createable": f.writable,
                "nillable": f.nillable,
                "defaultedOnCreate": f.defaulted,
                "custom": f.name.ends_with("__c"),
                "externalId": false,
                "referenceTo": if f.kind == "reference" { json!(["Account"]) } else { json!([]) },
            })
        })
        .collect();
    json!({
        "name": object.name(),
        "label": object.name(),
        "keyPrefix": object.key_prefix(),
        "createable": true,
        "updateable": true,
        "deletable": true,
        "queryable": true,
        "custom": false,
        "fields": fields,
        "urls": { "sobject": format!("{base}/sobjects/{}", object.name()) },
    })
}
