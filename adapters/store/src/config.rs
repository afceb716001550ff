use std::path::PathBuf;

/// Where the events live.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// A `postgres://` URL selects PostgreSQL; otherwise SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub max_connections: u32,
}

pub enum Backend {
    Postgres(String),
    Sqlite(PathBuf),
}

impl StoreConfig {
    pub fn sqlite(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            database_url: None,
            data_dir: data_dir.into(),
            max_connections: 16,
        }
    }

    pub fn postgres(url: impl Into<String>) -> Self {
        StoreConfig {
            database_url: Some(url.into()),
            data_dir: PathBuf::from("./data"),
            max_connections: 16,
        }
    }

    pub fn backend(&self) -> Backend {
        match &self.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Backend::Postgres(url.clone())
            }
            Some(url) if url.starts_with("sqlite://") => {
                let path = url.trim_start_matches("sqlite://");
                let path = path.split('?').next().unwrap_or(path);
                Backend::Sqlite(PathBuf::from(path))
            }
            _ => Backend::Sqlite(self.data_dir.join("syncledger.db")),
        }
    }

    /// The URL with any password replaced, fit for logs.
    pub fn redacted_url(&self) -> String {
        match self.backend() {
            Backend::Postgres(url) => redact_url(&url),
            Backend::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/x?sslmode=disable"),
            "postgres://app:***@db:5432/x?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    }

    #[test]
    fn url_selects_backend() {
        assert!(matches!(
            StoreConfig::postgres("postgres://x@y/z").backend(),
            Backend::Postgres(_)
        ));
        assert!(matches!(
            StoreConfig::sqlite("/tmp/d").backend(),
            Backend::Sqlite(p) if p.ends_with("syncledger.db")
        ));
    }
}
