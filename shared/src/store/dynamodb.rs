//! The production store: one DynamoDB table.
//!
//! This is the only module that knows the table's attribute names:
//! `pk`, `sk` (primary key), `gsi1pk`/`gsi1sk` and `gsi2pk`/`gsi2sk` (the two GSIs, named
//! `gsi1` and `gsi2`), `expires_at` (the TTL attribute, Unix seconds), `version` and `data`
//! (a map holding the item's attributes, so they can never collide with the key names).
//!
//! Reads of the table are strongly consistent; reads of an index are eventually consistent,
//! as DynamoDB allows nothing else.

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
    Condition, Cursor, Delete, Index, Item, Key, Page, Put, Query, SortKey, Store, StoreError, TxOp, Update,
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

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn build_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Invalid(format!("building a DynamoDB request: {e}"))
}

fn sdk_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match e.code() {
        Some("ConditionalCheckFailedException") => StoreError::ConditionFailed,
        Some("ValidationException") => {
            StoreError::Invalid(e.message().unwrap_or("DynamoDB rejected the request").to_owned())
        }
        _ => StoreError::Unavailable(anyhow::Error::new(e).context("DynamoDB call failed")),
    }
}

fn item_to_attrs(item: &Item) -> Result<AttrMap, StoreError> {
    let mut m = DynamoStore::key_attrs(&item.key);
    if let Some(k) = &item.gsi1 {
        m.insert(GSI1PK.into(), s(&k.pk));
        m.insert(GSI1SK.into(), s(&k.sk));
    }
    if let Some(k) = &item.gsi2 {
        m.insert(GSI2PK.into(), s(&k.pk));
        m.insert(GSI2SK.into(), s(&k.sk));
    }
    if let Some(t) = item.expires_at {
        m.insert(EXPIRES_AT.into(), n(t));
    }
    let version = i64::try_from(item.version).map_err(|_| StoreError::Invalid("version overflow".into()))?;
    m.insert(VERSION.into(), n(version));
    m.insert(DATA.into(), to_attr(&Value::Object(item.data.clone()))?);
    Ok(m)
}

fn to_attr(v: &Value) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| StoreError::Invalid(format!("value not storable: {e}")))
}

fn attrs_to_item(mut m: AttrMap) -> Result<Item, StoreError> {
    let mut take_s = |name: &str| match m.remove(name) {
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        None => Ok(None),
        Some(_) => Err(StoreError::Corrupt(format!("attribute {name} is not a string"))),
    };
    let pk = take_s(PK)?.ok_or_else(|| StoreError::Corrupt("item without pk".into()))?;
    let sk = take_s(SK)?.ok_or_else(|| StoreError::Corrupt("item without sk".into()))?;
    let index = |p: Option<String>, s: Option<String>| p.zip(s).map(|(pk, sk)| Key { pk, sk });
    let gsi1 = index(take_s(GSI1PK)?, take_s(GSI1SK)?);
    let gsi2 = index(take_s(GSI2PK)?, take_s(GSI2SK)?);
    let num = |v: Option<AttributeValue>, name: &str| -> Result<Option<i64>, StoreError> {
        match v {
            None => Ok(None),
            Some(AttributeValue::N(x)) => x
                .parse::<i64>()
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not an integer"))),
            Some(_) => Err(StoreError::Corrupt(format!("attribute {name} is not a number"))),
        }
    };
    let expires_at = num(m.remove(EXPIRES_AT), EXPIRES_AT)?;
    let version = num(m.remove(VERSION), VERSION)?.unwrap_or(0);
    let data: Map<String, Value> = match m.remove(DATA) {
        Some(a) => {
            serde_dynamo::from_attribute_value(a).map_err(|e| StoreError::Corrupt(format!("item {pk}/{sk}: {e}")))?
        }
        None => Map::new(),
    };
    Ok(Item { key: Key { pk, sk }, gsi1, gsi2, expires_at, version: u64::try_from(version).unwrap_or(0), data })
}

/// Builds expression strings with every name and value behind a placeholder, so attribute
/// names never clash with DynamoDB's reserved words.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: AttrMap,
}

impl Expr {
    fn name(&mut self, name: &str) -> String {
        if let Some((k, _)) = self.names.iter().find(|(_, v)| v.as_str() == name) {
            return k.clone();
        }
        let k = format!("#n{}", self.names.len());
        self.names.insert(k.clone(), name.to_owned());
        k
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let k = format!(":v{}", self.values.len());
        self.values.insert(k.clone(), v);
        k
    }

    fn data_path(&mut self, attr: &str) -> String {
        format!("{}.{}", self.name(DATA), self.name(attr))
    }

    fn live(&mut self, now: i64) -> String {
        let pk = self.name(PK);
        let ttl = self.name(EXPIRES_AT);
        let now = self.value(n(now));
        format!("(attribute_exists({pk}) AND (attribute_not_exists({ttl}) OR {ttl} > {now}))")
    }

    fn condition(&mut self, c: &Condition, now: i64) -> Result<String, StoreError> {
        Ok(match c {
            Condition::Exists => self.live(now),
            Condition::NotExists => {
                let pk = self.name(PK);
                let ttl = self.name(EXPIRES_AT);
                let now = self.value(n(now));
                format!("(attribute_not_exists({pk}) OR {ttl} <= {now})")
            }
            Condition::VersionIs(v) => {
                let live = self.live(now);
                let ver = self.name(VERSION);
                let v = self.value(n(i64::try_from(*v).map_err(|_| StoreError::Invalid("version overflow".into()))?));
                format!("({live} AND {ver} = {v})")
            }
            Condition::Equals(attr, value) => {
                let live = self.live(now);
                let path = self.data_path(attr);
                let v = self.value(to_attr(value)?);
                format!("({live} AND {path} = {v})")
            }
            Condition::Missing(attr) => {
                let live = self.live(now);
                let path = self.data_path(attr);
                format!("({live} AND attribute_not_exists({path}))")
            }
            Condition::All(all) => {
                if all.is_empty() {
                    let pk = self.name(PK);
                    return Ok(format!("(attribute_exists({pk}) OR attribute_not_exists({pk}))"));
                }
                let parts = all.iter().map(|c| self.condition(c, now)).collect::<Result<Vec<_>, _>>()?;
                format!("({})", parts.join(" AND "))
            }
        })
    }

    fn update(&mut self, u: &Update) -> Result<String, StoreError> {
        let mut set = Vec::new();
        let mut remove = Vec::new();
        for (attr, value) in &u.set {
            let path = self.data_path(attr);
            let v = self.value(to_attr(value)?);
            set.push(format!("{path} = {v}"));
        }
        for (attr, delta) in &u.add {
            let path = self.data_path(attr);
            let zero = self.value(n(0));
            let d = self.value(n(*delta));
            set.push(format!("{path} = if_not_exists({path}, {zero}) + {d}"));
        }
        for attr in &u.remove {
            remove.push(self.data_path(attr));
        }
        match u.expires_at {
            Some(Some(t)) => {
                let name = self.name(EXPIRES_AT);
                let v = self.value(n(t));
                set.push(format!("{name} = {v}"));
            }
            Some(None) => remove.push(self.name(EXPIRES_AT)),
            None => {}
        }
        for (change, pn, sn) in [(&u.gsi1, GSI1PK, GSI1SK), (&u.gsi2, GSI2PK, GSI2SK)] {
            match change {
                Some(Some(k)) => {
                    let (p, sv) = (self.name(pn), self.name(sn));
                    let (a, b) = (self.value(s(&k.pk)), self.value(s(&k.sk)));
                    set.push(format!("{p} = {a}"));
                    set.push(format!("{sv} = {b}"));
                }
                Some(None) => {
                    remove.push(self.name(pn));
                    remove.push(self.name(sn));
                }
                None => {}
            }
        }
        let ver = self.name(VERSION);
        let one = self.value(n(1));
        set.push(format!("{ver} = {ver} + {one}"));
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        Ok(expr)
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<AttrMap> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// The condition of an update: the item must exist, and the caller's condition must hold.
fn update_condition(u: &Update) -> Condition {
    match &u.condition {
        Some(c) => Condition::All(vec![Condition::Exists, c.clone()]),
        None => Condition::Exists,
    }
}

fn stored_put(p: &Put) -> Item {
    let mut item = p.item.clone();
    item.version += 1;
    item
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

        let mut start = query.cursor.as_ref().map(|c| {
            let mut m = HashMap::from([(PK.to_owned(), s(&c.position.pk)), (SK.to_owned(), s(&c.position.sk))]);
            if let Some(ik) = &c.position.index {
                m.insert(pname.to_owned(), s(&ik.pk));
                m.insert(sname.to_owned(), s(&ik.sk));
            }
            m
        });
        let want = query.limit as usize + 1;
        let mut items = Vec::new();
        loop {
            let remaining = i32::try_from(want - items.len()).unwrap_or(i32::MAX);
            let out = self
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
                .limit(remaining)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for a in out.items.unwrap_or_default() {
                items.push(attrs_to_item(a)?);
            }
            match out.last_evaluated_key {
                Some(k) if items.len() < want && !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        let limit = query.limit as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| Cursor::after_item(i, query.index))
        } else {
            None
        };
        Ok(Page { items, next })
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
                        .collect();
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
