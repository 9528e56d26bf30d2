//! Items as DynamoDB attribute maps and back, condition and update expressions (every name
//! a placeholder, so reserved words never bite), and SDK errors as store errors.

use super::*;

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn build_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Invalid(format!("building a DynamoDB request: {e}"))
}

pub(super) fn sdk_error<E, R>(e: SdkError<E, R>) -> StoreError
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

pub(super) fn item_to_attrs(item: &Item) -> Result<AttrMap, StoreError> {
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

pub(super) fn to_attr(v: &Value) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| StoreError::Invalid(format!("value not storable: {e}")))
}

pub(super) fn attrs_to_item(mut m: AttrMap) -> Result<Item, StoreError> {
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
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: AttrMap,
}

impl Expr {
    pub(super) fn name(&mut self, name: &str) -> String {
        if let Some((k, _)) = self.names.iter().find(|(_, v)| v.as_str() == name) {
            return k.clone();
        }
        let k = format!("#n{}", self.names.len());
        self.names.insert(k.clone(), name.to_owned());
        k
    }

    pub(super) fn value(&mut self, v: AttributeValue) -> String {
        let k = format!(":v{}", self.values.len());
        self.values.insert(k.clone(), v);
        k
    }

    pub(super) fn data_path(&mut self, attr: &str) -> String {
        format!("{}.{}", self.name(DATA), self.name(attr))
    }

    pub(super) fn live(&mut self, now: i64) -> String {
        let pk = self.name(PK);
        let ttl = self.name(EXPIRES_AT);
        let now = self.value(n(now));
        format!("(attribute_exists({pk}) AND (attribute_not_exists({ttl}) OR {ttl} > {now}))")
    }

    pub(super) fn condition(&mut self, c: &Condition, now: i64) -> Result<String, StoreError> {
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

    pub(super) fn update(&mut self, u: &Update) -> Result<String, StoreError> {
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

    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub(super) fn values(&self) -> Option<AttrMap> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// The condition of an update: the item must exist, and the caller's condition must hold.
pub(super) fn update_condition(u: &Update) -> Condition {
    match &u.condition {
        Some(c) => Condition::All(vec![Condition::Exists, c.clone()]),
        None => Condition::Exists,
    }
}

pub(super) fn stored_put(p: &Put) -> Item {
    let mut item = p.item.clone();
    item.version += 1;
    item
}
