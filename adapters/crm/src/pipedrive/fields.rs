//! The field catalogue, and readable names for custom fields.
//!
//! Pipedrive keys custom fields by a 40-character hash; the engine maps fields
//! by name, so the adapter exposes each custom field under a snake_case name
//! derived from its label ("Lead source" → `lead_source`). A name that clashes
//! with a standard field or another custom field gets a short suffix of its
//! hash, so every field keeps a distinct, stable name.

use std::collections::{BTreeMap, HashMap};

use syncledger_domain::Entity;

use crate::types::FieldInfo;

/// Standard fields the adapter flattens, per entity, with their catalogue key.
pub fn standard_fields(entity: Entity) -> &'static [(&'static str, &'static str)] {
    match entity {
        Entity::Contacts => &[
            ("name", "name"),
            ("first_name", "first_name"),
            ("last_name", "last_name"),
            ("email", "email"),
            ("phone", "phone"),
            ("org_id", "org_id"),
            ("owner_id", "owner_id"),
        ],
        Entity::Companies => &[
            ("name", "name"),
            ("address", "address"),
            ("owner_id", "owner_id"),
        ],
    }
}

/// One entry of `/v1/personFields` or `/v1/organizationFields`.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct FieldDef {
    pub key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub field_type: String,
    #[serde(default)]
    pub edit_flag: bool,
    #[serde(default)]
    pub mandatory_flag: bool,
}

pub fn is_hash_key(key: &str) -> bool {
    key.len() == 40 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `"Lead source"` → `lead_source`; anything but ASCII letters and digits separates words.
pub fn snake_case(label: &str) -> String {
    let mut out = String::new();
    for word in label
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "field_");
    }
    out
}

/// The catalogue of one entity, with both directions of the name mapping.
#[derive(Clone, Debug, Default)]
pub struct FieldMap {
    pub infos: Vec<FieldInfo>,
    by_name: HashMap<String, String>,
    by_hash: HashMap<String, String>,
}

impl FieldMap {
    pub fn build(entity: Entity, defs: &[FieldDef]) -> Self {
        let standard = standard_fields(entity);
        let mut infos = Vec::new();
        for (name, key) in standard {
            let def = defs.iter().find(|d| d.key == *key);
            infos.push(FieldInfo {
                name: (*name).to_owned(),
                label: def.map_or_else(|| (*name).to_owned(), |d| d.name.clone()),
                field_type: def.map_or_else(|| "varchar".to_owned(), |d| d.field_type.clone()),
                required: def.is_some_and(|d| d.mandatory_flag),
                writable: def.is_none_or(|d| d.edit_flag),
            });
        }
        let custom: Vec<&FieldDef> = defs.iter().filter(|d| is_hash_key(&d.key)).collect();
        let mut base_count: BTreeMap<String, usize> = BTreeMap::new();
        for def in &custom {
            *base_count.entry(snake_case(&def.name)).or_default() += 1;
        }
        let mut map = FieldMap::default();
        for def in custom {
            let base = snake_case(&def.name);
            let clashes = standard.iter().any(|(n, _)| *n == base)
                || base_count.get(&base).copied().unwrap_or(0) > 1;
            let mut name = if clashes {
                format!("{base}_{}", &def.key[..6])
            } else {
                base
            };
            if map.by_name.contains_key(&name) {
                name = format!("{name}_{}", def.key);
            }
            map.by_name.insert(name.clone(), def.key.clone());
            map.by_hash.insert(def.key.clone(), name.clone());
            infos.push(FieldInfo {
                name,
                label: def.name.clone(),
                field_type: def.field_type.clone(),
                required: def.mandatory_flag,
                writable: def.edit_flag,
            });
        }
        map.infos = infos;
        map
    }

    pub fn name_of(&self, hash: &str) -> Option<&str> {
        self.by_hash.get(hash).map(String::as_str)
    }

    pub fn hash_of(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(key: &str, name: &str) -> FieldDef {
        FieldDef {
            key: key.into(),
            name: name.into(),
            field_type: "varchar".into(),
            edit_flag: true,
            mandatory_flag: false,
        }
    }

    #[test]
    fn labels_become_snake_case() {
        assert_eq!(snake_case("Lead source"), "lead_source");
        assert_eq!(snake_case("  Employee count (#) "), "employee_count");
        assert_eq!(snake_case("2nd phone"), "field_2nd_phone");
        assert_eq!(snake_case("!!"), "field_");
    }

    #[test]
    fn clashing_names_get_a_hash_suffix() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let c = "c".repeat(40);
        let defs = [
            def("email", "Email"),
            def(&a, "Email"),
            def(&b, "Tier"),
            def(&c, "tier"),
        ];
        let map = FieldMap::build(Entity::Contacts, &defs);
        assert_eq!(map.name_of(&a), Some("email_aaaaaa"));
        assert_eq!(map.name_of(&b), Some("tier_bbbbbb"));
        assert_eq!(map.hash_of("tier_cccccc"), Some(c.as_str()));
        assert!(map
            .infos
            .iter()
            .any(|f| f.name == "email" && f.label == "Email"));
    }
}
