//! The HubSpot sandbox's records: object types, a record with its properties and
//! history, how it is shown, and the API's time format.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectType {
    Contacts,
    Companies,
}

impl ObjectType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "contacts" | "contact" | "0-1" => Some(Self::Contacts),
            "companies" | "company" | "0-2" => Some(Self::Companies),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contacts => "contacts",
            Self::Companies => "companies",
        }
    }

    pub fn modified_property(self) -> &'static str {
        match self {
            Self::Contacts => "lastmodifieddate",
            Self::Companies => "hs_lastmodifieddate",
        }
    }

    /// The unique property usable as `idProperty` in upserts.
    pub fn unique_property(self) -> &'static str {
        match self {
            Self::Contacts => "email",
            Self::Companies => "domain",
        }
    }

    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            Self::Contacts => &["firstname", "lastname", "email"],
            Self::Companies => &["name", "domain"],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Record {
    pub id: u64,
    pub properties: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub archived_ms: Option<i64>,
}

impl Record {
    /// The instant behind a server-maintained date property.
    pub fn time(&self, ty: ObjectType, name: &str) -> Option<i64> {
        match name {
            "createdate" => Some(self.created_ms),
            n if n == ty.modified_property() || n == "hs_lastmodifieddate" => Some(self.updated_ms),
            _ => None,
        }
    }

    /// A property value, including the ones the server derives.
    pub fn prop(&self, ty: ObjectType, name: &str) -> Option<String> {
        if name == "hs_object_id" {
            return Some(self.id.to_string());
        }
        match self.time(ty, name) {
            Some(ms) => Some(iso(ms)),
            None => self.properties.get(name).cloned(),
        }
    }

    pub fn to_json(&self, ty: ObjectType, wanted: Option<&[String]>) -> Value {
        serde_json::to_value(self.view(ty, wanted)).unwrap_or(Value::Null)
    }

    /// The record as the API shows it, with the `wanted` properties (else the type's
    /// defaults) and the ones always shown; serialized straight from the record, so a
    /// page of results costs no intermediate JSON tree.
    pub fn view<'a>(&'a self, ty: ObjectType, wanted: Option<&'a [String]>) -> RecordView<'a> {
        let always = ["hs_object_id", "createdate", ty.modified_property()];
        let mut names: Vec<&'a str> = Vec::with_capacity(16);
        let listed: Box<dyn Iterator<Item = &'a str>> = match wanted {
            Some(list) => Box::new(list.iter().map(String::as_str)),
            None => Box::new(ty.default_properties().iter().copied()),
        };
        for name in listed.chain(always) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        RecordView {
            record: self,
            ty,
            names,
        }
    }
}

/// See [`Record::view`].
pub struct RecordView<'a> {
    record: &'a Record,
    ty: ObjectType,
    names: Vec<&'a str>,
}

struct Properties<'v, 'a>(&'v RecordView<'a>);

impl serde::Serialize for Properties<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let view = self.0;
        let mut map = serializer.serialize_map(Some(view.names.len()))?;
        for name in &view.names {
            if *name == "hs_object_id" {
                map.serialize_entry(name, &view.record.id.to_string())?;
            } else if let Some(ms) = view.record.time(view.ty, name) {
                map.serialize_entry(name, &iso(ms))?;
            } else {
                map.serialize_entry(name, &view.record.properties.get(*name))?;
            }
        }
        map.end()
    }
}

impl serde::Serialize for RecordView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.record;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &r.id.to_string())?;
        map.serialize_entry("properties", &Properties(self))?;
        map.serialize_entry("createdAt", &iso(r.created_ms))?;
        map.serialize_entry("updatedAt", &iso(r.updated_ms))?;
        map.serialize_entry("archived", &r.archived_ms.is_some())?;
        if let Some(at) = r.archived_ms {
            map.serialize_entry("archivedAt", &iso(at))?;
        }
        map.end()
    }
}

pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Accepts epoch milliseconds or an RFC 3339 timestamp, as HubSpot filters do.
pub fn parse_time(value: &str) -> Option<i64> {
    if let Ok(ms) = value.trim().parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|d| d.timestamp_millis())
}
