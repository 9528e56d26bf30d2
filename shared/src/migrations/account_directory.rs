//! Migration 1: every account in the account directory.
//!
//! Accounts created before the directory existed carry no gsi1 key, so an operator listing
//! ([`crate::tenancy::directory_page`]) would miss them. New and rewritten accounts get the
//! entry from [`crate::tenancy::account_item`]; this gives it to the rest.

use async_trait::async_trait;

use super::Migration;
use crate::id::AccountId;
use crate::keys;
use crate::store::{Condition, Cursor, Scan, Store, StoreError, Update};

/// Items read per step.
const PAGE: u32 = 100;

/// See the module documentation.
pub struct AccountDirectory;

#[async_trait]
impl Migration for AccountDirectory {
    fn number(&self) -> u32 {
        1
    }

    fn name(&self) -> &'static str {
        "account directory"
    }

    async fn step(&self, store: &dyn Store, from: Option<Cursor>) -> Result<Option<Cursor>, StoreError> {
        let page = store.scan(Scan::new(PAGE).after(from)).await?;
        for item in &page.items {
            let Some(id) = item.key.pk.strip_prefix("ACCOUNT#").filter(|_| item.key.sk == "ACCOUNT") else { continue };
            let Ok(id) = id.parse::<AccountId>() else { continue };
            let entry = keys::account_directory_entry(id);
            if item.key != keys::account(id) || item.gsi1.as_ref() == Some(&entry) {
                continue;
            }
            // Only the index key changes, so a concurrent edit of the account loses nothing;
            // an account purged meanwhile is simply gone.
            match store.update(Update::new(item.key.clone()).gsi1(Some(entry)).when(Condition::Exists)).await {
                Err(e) if e.is_condition_failure() => {}
                other => {
                    other?;
                }
            }
        }
        Ok(page.next)
    }
}
