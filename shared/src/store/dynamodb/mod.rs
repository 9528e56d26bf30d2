//! The production store: one DynamoDB table.
//!
//! This is the only module that knows the table's attribute names:
//! `pk`, `sk` (primary key), `gsi1pk`/`gsi1sk` and `gsi2pk`/`gsi2sk` (the two GSIs, named
//! `gsi1` and `gsi2`), `expires_at` (the TTL attribute, Unix seconds), `version` and `data`
//! (a map holding the item's attributes, so they can never collide with the key names).
//!
//! Reads of the table are strongly consistent; reads of an index are eventually consistent,
//! as DynamoDB allows nothing else.

mod attributes;

use attributes::*;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete as DdbDelete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put as DdbPut, ReturnValue, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, Update as DdbUpdate,
};
use serde_json::{Map, Value};

use super::{
    Condition, Delete, Index, Item, Key, Page, Put, Query, Scan, SortKey, Store, StoreError, TxOp, Update,
    validate_put, validate_transaction,
};
use crate::clock::Clock;

const PK: &str = "pk";
const SK: &str = "sk";
const GSI1PK: &str = "gsi1pk";
const GSI1SK: &str = "gsi1sk";
const GSI2PK: &str = "gsi2pk";
const GSI2SK: &str = "gsi2sk";
const EXPIRES_AT: &str = "expires_at";
const VERSION: &str = "version";
const DATA: &str = "data";
/// The key `ping` reads: it never exists, and reading it proves the table answers.
const HEALTH_KEY: &str = "#health";

type AttrMap = HashMap<String, AttributeValue>;

/// The DynamoDB adapter of [`Store`].
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    clock: Arc<dyn Clock>,
}

impl DynamoStore {
    /// A store over `table`, using a client built once per process.
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self { client, table: table.into().into(), clock }
    }

    /// Creates a table with the key schema this adapter expects and enables TTL: for tests
    /// and self-managed set-ups. Deployed tables come from `template.yaml`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if DynamoDB refuses.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(build_error)
        };
        let gsi = |name: &str, p: &str, s: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(p, KeyType::Hash)?)
                .key_schema(key(s, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(build_error)
        };
        let mut req = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .global_secondary_indexes(gsi("gsi1", GSI1PK, GSI1SK)?)
            .global_secondary_indexes(gsi("gsi2", GSI2PK, GSI2SK)?);
        for name in [PK, SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK] {
            req = req.attribute_definitions(attr(name)?);
        }
        req.send().await.map_err(sdk_error)?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(EXPIRES_AT)
                    .enabled(true)
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    fn key_attrs(key: &Key) -> AttrMap {
        HashMap::from([(PK.into(), s(&key.pk)), (SK.into(), s(&key.sk))])
    }
}

/// Follows DynamoDB's pages (each `request(limit, exclusive start key)` one Query or Scan
/// call) until `want` items are read or the range ends: a call stops at 1 MB or at its
/// limit before the filter drops expired items, so one call may return fewer than asked.
async fn fill<F, Fut>(want: usize, mut start: Option<AttrMap>, mut request: F) -> Result<Vec<Item>, StoreError>
where
    F: FnMut(i32, Option<AttrMap>) -> Fut,
    Fut: std::future::Future<Output = Result<(Option<Vec<AttrMap>>, Option<AttrMap>), StoreError>>,
{
    let mut items = Vec::new();
    loop {
        let remaining = i32::try_from(want - items.len()).unwrap_or(i32::MAX);
        let (page, last) = request(remaining, start.take()).await?;
        for a in page.unwrap_or_default() {
            items.push(attrs_to_item(a)?);
        }
        match last {
            Some(k) if items.len() < want && !k.is_empty() => start = Some(k),
            _ => return Ok(items),
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        key.validate()?;
        let out = self
            .client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(Self::key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let now = self.clock.now_secs();
        out.item.map(attrs_to_item).transpose().map(|i| i.filter(|i| i.is_live(now)))
    }

    async fn put(&self, put: Put) -> Result<Item, StoreError> {
        validate_put(&put)?;
        let item = stored_put(&put);
        let mut req = self.client.put_item().table_name(self.table.as_ref()).set_item(Some(item_to_attrs(&item)?));
        if let Some(c) = &put.condition {
            let mut e = Expr::default();
            let cond = e.condition(c, self.clock.now_secs())?;
            req = req
                .condition_expression(cond)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values());
        }
        req.send().await.map_err(sdk_error)?;
        Ok(item)
    }

    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        update.validate()?;
        let now = self.clock.now_secs();
        let mut e = Expr::default();
        let expr = e.update(&update)?;
        let cond = e.condition(&update_condition(&update), now)?;
        let out = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(Self::key_attrs(&update.key)))
            .update_expression(expr)
            .condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(sdk_error)?;
        attrs_to_item(out.attributes.unwrap_or_default())
    }

    async fn delete(&self, delete: Delete) -> Result<Option<Item>, StoreError> {
        delete.key.validate()?;
        let now = self.clock.now_secs();
        let mut req = self
            .client
            .delete_item()
            .table_name(self.table.as_ref())
            .set_key(Some(Self::key_attrs(&delete.key)))
            .return_values(ReturnValue::AllOld);
        if let Some(c) = &delete.condition {
            c.validate()?;
            let mut e = Expr::default();
            let cond = e.condition(c, now)?;
            req = req
                .condition_expression(cond)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values());
        }
        let out = req.send().await.map_err(sdk_error)?;
        match out.attributes {
            Some(a) if !a.is_empty() => Ok(Some(attrs_to_item(a)?).filter(|i| i.is_live(now))),
            _ => Ok(None),
        }
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        query.validate()?;
        let now = self.clock.now_secs();
        let (pname, sname, index_name) = match query.index {
            None => (PK, SK, None),
            Some(Index::Gsi1) => (GSI1PK, GSI1SK, Some("gsi1")),
            Some(Index::Gsi2) => (GSI2PK, GSI2SK, Some("gsi2")),
        };
        let mut e = Expr::default();
        let p = e.name(pname);
        let pv = e.value(s(&query.partition));
        let mut key_cond = format!("{p} = {pv}");
        // Named only when a sort condition uses it: DynamoDB rejects unused names.
        let sk = if query.sort == SortKey::All { String::new() } else { e.name(sname) };
        let mut bound = |op: &str, v: &str, e: &mut Expr| {
            let v = e.value(s(v));
            key_cond.push_str(&format!(" AND {sk} {op} {v}"));
        };
        match &query.sort {
            SortKey::All => {}
            SortKey::BeginsWith(prefix) => {
                let v = e.value(s(prefix));
                key_cond.push_str(&format!(" AND begins_with({sk}, {v})"));
            }
            SortKey::Between(a, b) => {
                let (a, b) = (e.value(s(a)), e.value(s(b)));
                key_cond.push_str(&format!(" AND {sk} BETWEEN {a} AND {b}"));
            }
            SortKey::Eq(v) => bound("=", v, &mut e),
            SortKey::Lt(v) => bound("<", v, &mut e),
            SortKey::Le(v) => bound("<=", v, &mut e),
            SortKey::Gt(v) => bound(">", v, &mut e),
            SortKey::Ge(v) => bound(">=", v, &mut e),
        }
        let ttl = e.name(EXPIRES_AT);
        let nowv = e.value(n(now));
        let filter = format!("attribute_not_exists({ttl}) OR {ttl} > {nowv}");

        let start = query.cursor.as_ref().map(|c| {
            let mut m = HashMap::from([(PK.to_owned(), s(&c.position.pk)), (SK.to_owned(), s(&c.position.sk))]);
            if let Some(ik) = &c.position.index {
                m.insert(pname.to_owned(), s(&ik.pk));
                m.insert(sname.to_owned(), s(&ik.sk));
            }
            m
        });
        let request = |limit: i32, start: Option<AttrMap>| {
            let call = self
                .client
                .query()
                .table_name(self.table.as_ref())
                .set_index_name(index_name.map(str::to_owned))
                .key_condition_expression(&key_cond)
                .filter_expression(&filter)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .scan_index_forward(!query.descending)
                .consistent_read(index_name.is_none())
                .limit(limit)
                .set_exclusive_start_key(start);
            async move {
                let out = call.send().await.map_err(sdk_error)?;
                Ok((out.items, out.last_evaluated_key))
            }
        };
        let items = fill(query.limit as usize + 1, start, request).await?;
        Ok(Page::from_overfetch(items, query.limit, query.index))
    }

    async fn scan(&self, scan: Scan) -> Result<Page, StoreError> {
        scan.validate()?;
        let now = self.clock.now_secs();
        let mut e = Expr::default();
        let ttl = e.name(EXPIRES_AT);
        let nowv = e.value(n(now));
        let filter = format!("attribute_not_exists({ttl}) OR {ttl} > {nowv}");
        let start = scan
            .cursor
            .as_ref()
            .map(|c| HashMap::from([(PK.to_owned(), s(&c.position.pk)), (SK.to_owned(), s(&c.position.sk))]));
        let request = |limit: i32, start: Option<AttrMap>| {
            let call = self
                .client
                .scan()
                .table_name(self.table.as_ref())
                .filter_expression(&filter)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .consistent_read(true)
                .limit(limit)
                .set_exclusive_start_key(start);
            async move {
                let out = call.send().await.map_err(sdk_error)?;
                Ok((out.items, out.last_evaluated_key))
            }
        };
        let items = fill(scan.limit as usize + 1, start, request).await?;
        Ok(Page::from_overfetch(items, scan.limit, None))
    }

    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        let now = self.clock.now_secs();
        let table = self.table.as_ref();
        let mut items = Vec::with_capacity(ops.len());
        for op in &ops {
            let mut e = Expr::default();
            let item = match op {
                TxOp::Put(p) => {
                    let cond = p.condition.as_ref().map(|c| e.condition(c, now)).transpose()?;
                    TransactWriteItem::builder()
                        .put(
                            DdbPut::builder()
                                .table_name(table)
                                .set_item(Some(item_to_attrs(&stored_put(p))?))
                                .set_condition_expression(cond)
                                .set_expression_attribute_names(e.names())
                                .set_expression_attribute_values(e.values())
                                .build()
                                .map_err(build_error)?,
                        )
                        .build()
                }
                TxOp::Update(u) => {
                    let expr = e.update(u)?;
                    let cond = e.condition(&update_condition(u), now)?;
                    TransactWriteItem::builder()
                        .update(
                            DdbUpdate::builder()
                                .table_name(table)
                                .set_key(Some(Self::key_attrs(&u.key)))
                                .update_expression(expr)
                                .condition_expression(cond)
                                .set_expression_attribute_names(e.names())
                                .set_expression_attribute_values(e.values())
                                .build()
                                .map_err(build_error)?,
                        )
                        .build()
                }
                TxOp::Delete(d) => {
                    let cond = d.condition.as_ref().map(|c| e.condition(c, now)).transpose()?;
                    TransactWriteItem::builder()
                        .delete(
                            DdbDelete::builder()
                                .table_name(table)
                                .set_key(Some(Self::key_attrs(&d.key)))
                                .set_condition_expression(cond)
                                .set_expression_attribute_names(e.names())
                                .set_expression_attribute_values(e.values())
                                .build()
                                .map_err(build_error)?,
                        )
                        .build()
                }
                TxOp::Check(k, c) => {
                    let cond = e.condition(c, now)?;
                    TransactWriteItem::builder()
                        .condition_check(
                            ConditionCheck::builder()
                                .table_name(table)
                                .set_key(Some(Self::key_attrs(k)))
                                .condition_expression(cond)
                                .set_expression_attribute_names(e.names())
                                .set_expression_attribute_values(e.values())
                                .build()
                                .map_err(build_error)?,
                        )
                        .build()
                }
            };
            items.push(item);
        }
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                if let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) =
                    err.as_service_error()
                {
                    let failed = c
                        .cancellation_reasons()
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, _)| i)
                        .collect::<Vec<_>>();
                    // Cancelled for a conflict with another transaction or for throttling,
                    // with every condition holding: nothing is wrong with the request, so
                    // it is a passing outage (retry), not a condition a caller acts on.
                    // https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
                    if failed.is_empty() {
                        return Err(StoreError::Unavailable(anyhow::anyhow!(
                            "the transaction was cancelled without a failed condition: {:?}",
                            c.cancellation_reasons().iter().filter_map(|r| r.code()).collect::<Vec<_>>()
                        )));
                    }
                    return Err(StoreError::TransactionCanceled { failed });
                }
                Err(sdk_error(err))
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(Self::key_attrs(&Key::new(HEALTH_KEY, HEALTH_KEY))))
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error)
    }
}
