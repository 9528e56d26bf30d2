//! Which storage adapter a process uses, from `GROUNDWORK_STORE` and `GROUNDWORK_TABLE`.

use crate::settings::ConfigError;
use crate::settings::Env;

/// Where items are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    /// SQLite in the data directory (the local default).
    Embedded,
    /// One DynamoDB table (production).
    DynamoDb,
}

crate::choices!(StoreBackend { "embedded" => Embedded, "dynamodb" => DynamoDb });

/// The storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `GROUNDWORK_STORE`: `embedded` or `dynamodb` (default `embedded`).
    pub backend: StoreBackend,
    /// `GROUNDWORK_TABLE`: the DynamoDB table (required with `dynamodb`).
    pub table: Option<String>,
}

impl StoreConfig {
    /// From `GROUNDWORK_STORE` and `GROUNDWORK_TABLE`.
    ///
    /// # Errors
    /// An unknown backend; `dynamodb` without a table.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let backend = env.choice("GROUNDWORK_STORE", StoreBackend::Embedded)?;
        let table = env.get("GROUNDWORK_TABLE");
        if backend == StoreBackend::DynamoDb && table.is_none() {
            return Err(ConfigError::Missing {
                var: "GROUNDWORK_TABLE".into(),
                why: "GROUNDWORK_STORE=dynamodb needs the table name",
            });
        }
        Ok(Self { backend, table })
    }
}
