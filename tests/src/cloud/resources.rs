//! The template's resources, created on the harness's own loopback AWS server: the table,
//! queues (dead-letter queues first, redrive policies as written), topics and their SQS
//! subscriptions, the SES configuration set and identity, the bucket; and what deploy
//! creates beside the stack (the signing keys' secret, as `infra/deploy.sh` does). Other
//! resources (log groups, alarms, backups, roles...) have nothing to run locally: their
//! `Ref` and `Arn` resolve to placeholder names so the properties that mention them resolve.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use serde_json::{Value as Json, json};

use super::stack::{ACCOUNT, REGION, Resolved, Stack};

/// A raw client for the loopback server's APIs, signed with a fixed access key id (the
/// server does not check signatures; it routes by the credential's service and records
/// calls by its key id).
#[derive(Clone)]
pub struct Aws {
    /// The server's URL.
    pub url: String,
    http: reqwest::Client,
    key: String,
}

impl Aws {
    /// A client of the server at `url` calling as `key`.
    pub fn new(url: &str, key: &str) -> Self {
        Self { url: url.to_owned(), http: reqwest::Client::new(), key: key.to_owned() }
    }

    fn request(&self, method: reqwest::Method, path: &str, service: &str) -> reqwest::RequestBuilder {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0",
            self.key
        );
        self.http.request(method, format!("{}{path}", self.url)).header("authorization", authorization)
    }

    async fn answer(request: reqwest::RequestBuilder, what: &str) -> Result<Json> {
        let res = request.send().await.with_context(|| format!("{what}: the server did not answer"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{what}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Json::String(text)))
    }

    /// A JSON-protocol call (`DynamoDB_20120810.CreateTable`, `AmazonSQS.CreateQueue`...).
    ///
    /// # Errors
    /// When the server refuses; the message has its answer.
    pub async fn json(&self, service: &str, target: &str, body: Json) -> Result<Json> {
        let request = self
            .request(reqwest::Method::POST, "/", service)
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.0")
            .body(body.to_string());
        Self::answer(request, target).await
    }

    /// A query-protocol call (SNS): `Action` and its form parameters.
    ///
    /// # Errors
    /// When the server refuses.
    pub async fn query(&self, service: &str, action: &str, params: &[(String, String)]) -> Result<String> {
        let mut form = vec![("Action".to_owned(), action.to_owned()), ("Version".to_owned(), "2010-03-31".to_owned())];
        form.extend(params.iter().cloned());
        let request = self.request(reqwest::Method::POST, "/", service).form(&form);
        let res = request.send().await.with_context(|| format!("{action}: the server did not answer"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{action}: {status} {text}");
        }
        Ok(text)
    }

    /// A REST call (SES v2, S3).
    ///
    /// # Errors
    /// When the server refuses.
    pub async fn rest(&self, method: reqwest::Method, service: &str, path: &str, body: Option<Json>) -> Result<Json> {
        let mut request = self.request(method, path, service);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        Self::answer(request, path).await
    }
}

/// Where the template sends SES events: the configuration set's destination topic.
#[derive(Debug, Clone)]
pub struct MailEventRoute {
    /// The configuration set's name.
    pub configuration_set: String,
    /// The SNS topic's ARN.
    pub topic: String,
    /// The event types it matches (`bounce`, `complaint`...), lower case.
    pub event_types: Vec<String>,
}

/// What [`create`] made.
#[derive(Debug, Default)]
pub struct Created {
    /// The routes of SES events.
    pub mail_events: Vec<MailEventRoute>,
}

fn prop(props: &Resolved, key: &str) -> Option<Resolved> {
    match props {
        Resolved::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        _ => None,
    }
}

fn text(props: &Resolved, key: &str) -> Option<String> {
    prop(props, key).and_then(|v| v.text().ok())
}

fn properties(stack: &Stack, resource: &serde_yaml_ng::Value, logical: &str) -> Result<Resolved> {
    match resource.get("Properties") {
        Some(p) => stack.resolve(p).with_context(|| format!("resolving {logical}'s properties")),
        None => Ok(Resolved::Map(Vec::new())),
    }
}

/// Creates the template's resources on the server `aws` calls, recording each one's
/// physical names in `stack`.
///
/// # Errors
/// When a property does not resolve or the server refuses; the message names the resource.
pub async fn create(stack: &mut Stack, aws: &Aws, jwt_keys: &str) -> Result<Created> {
    let mut created = Created::default();
    // Placeholders first, so any reference resolves; the created resources overwrite them.
    let all: Vec<(String, String)> = stack
        .template
        .get("Resources")
        .and_then(serde_yaml_ng::Value::as_mapping)
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.as_str().unwrap_or_default().to_owned(),
                v.get("Type").and_then(|t| t.as_str()).unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (logical, kind) in &all {
        let name = format!("{}-{logical}", stack.name);
        let arn =
            format!("arn:aws:{}:{REGION}:{ACCOUNT}:{name}", kind.split("::").nth(1).unwrap_or("x").to_lowercase());
        stack.set_physical(logical, name, [("Arn".to_owned(), arn)].into());
    }

    for (logical, resource) in stack.resources("AWS::DynamoDB::Table")? {
        let props = properties(stack, &resource, &logical)?;
        let name = text(&props, "TableName").unwrap_or_else(|| format!("{}-{logical}", stack.name));
        let mut request = json!({
            "TableName": name,
            "AttributeDefinitions": prop(&props, "AttributeDefinitions").map(|v| v.json()),
            "KeySchema": prop(&props, "KeySchema").map(|v| v.json()),
            "BillingMode": text(&props, "BillingMode").unwrap_or_else(|| "PAY_PER_REQUEST".into()),
        });
        if let Some(indexes) = prop(&props, "GlobalSecondaryIndexes") {
            request["GlobalSecondaryIndexes"] = indexes.json();
        }
        aws.json("dynamodb", "DynamoDB_20120810.CreateTable", request)
            .await
            .with_context(|| format!("creating {logical}"))?;
        if let Some(ttl) = prop(&props, "TimeToLiveSpecification") {
            let mut spec = ttl.json();
            spec["Enabled"] = json!(spec["Enabled"] == "true");
            aws.json(
                "dynamodb",
                "DynamoDB_20120810.UpdateTimeToLive",
                json!({"TableName": name, "TimeToLiveSpecification": spec}),
            )
            .await?;
        }
        let arn = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}");
        stack.set_physical(&logical, name, [("Arn".to_owned(), arn)].into());
    }

    // Dead-letter queues before the queues whose redrive policy names them.
    let mut queues = stack.resources("AWS::SQS::Queue")?;
    queues.sort_by_key(|(_, r)| r.get("Properties").and_then(|p| p.get("RedrivePolicy")).is_some());
    for (logical, resource) in queues {
        let props = properties(stack, &resource, &logical)?;
        let mut name = text(&props, "QueueName").unwrap_or_else(|| format!("{}-{logical}", stack.name));
        if text(&props, "FifoQueue").as_deref() == Some("true") && !name.ends_with(".fifo") {
            name.push_str(".fifo");
        }
        let mut attributes = serde_json::Map::new();
        for key in [
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "FifoQueue",
            "ContentBasedDeduplication",
            "ReceiveMessageWaitTimeSeconds",
            "MaximumMessageSize",
        ] {
            if let Some(v) = text(&props, key) {
                attributes.insert(key.to_owned(), Json::String(v));
            }
        }
        if let Some(redrive) = prop(&props, "RedrivePolicy") {
            let redrive = redrive.json();
            let count: u64 = redrive["maxReceiveCount"].as_str().unwrap_or("10").parse().context("maxReceiveCount")?;
            let policy = json!({"deadLetterTargetArn": redrive["deadLetterTargetArn"], "maxReceiveCount": count});
            attributes.insert("RedrivePolicy".to_owned(), Json::String(policy.to_string()));
        }
        let answer = aws
            .json("sqs", "AmazonSQS.CreateQueue", json!({"QueueName": name, "Attributes": attributes}))
            .await
            .with_context(|| format!("creating {logical}"))?;
        let url = answer["QueueUrl"].as_str().context("CreateQueue's QueueUrl")?.to_owned();
        let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}");
        stack.set_physical(
            &logical,
            url.clone(),
            [("Arn".to_owned(), arn), ("QueueName".to_owned(), name), ("QueueUrl".to_owned(), url)].into(),
        );
    }

    for (logical, resource) in stack.resources("AWS::S3::Bucket")? {
        let props = properties(stack, &resource, &logical)?;
        let name = text(&props, "BucketName").unwrap_or_else(|| format!("{}-{logical}", stack.name).to_lowercase());
        aws.rest(reqwest::Method::PUT, "s3", &format!("/{name}"), None)
            .await
            .with_context(|| format!("creating {logical}"))?;
        let arn = format!("arn:aws:s3:::{name}");
        stack.set_physical(&logical, name, [("Arn".to_owned(), arn)].into());
    }

    for (logical, resource) in stack.resources("AWS::SNS::Topic")? {
        let props = properties(stack, &resource, &logical)?;
        let name = text(&props, "TopicName").unwrap_or_else(|| format!("{}-{logical}", stack.name));
        aws.query("sns", "CreateTopic", &[("Name".into(), name.clone())])
            .await
            .with_context(|| format!("creating {logical}"))?;
        let arn = format!("arn:aws:sns:{REGION}:{ACCOUNT}:{name}");
        stack.set_physical(
            &logical,
            arn.clone(),
            [("TopicArn".to_owned(), arn), ("TopicName".to_owned(), name)].into(),
        );
    }
    for (logical, resource) in stack.resources("AWS::SNS::Subscription")? {
        let props = properties(stack, &resource, &logical)?;
        // Only queue subscriptions carry anything the harness can deliver.
        if text(&props, "Protocol").as_deref() != Some("sqs") {
            continue;
        }
        let mut params = vec![
            ("TopicArn".to_owned(), text(&props, "TopicArn").context("TopicArn")?),
            ("Protocol".to_owned(), "sqs".to_owned()),
            ("Endpoint".to_owned(), text(&props, "Endpoint").context("Endpoint")?),
        ];
        if let Some(raw) = text(&props, "RawMessageDelivery") {
            params.push(("Attributes.entry.1.key".into(), "RawMessageDelivery".into()));
            params.push(("Attributes.entry.1.value".into(), raw));
        }
        aws.query("sns", "Subscribe", &params).await.with_context(|| format!("creating {logical}"))?;
    }

    for (logical, resource) in stack.resources("AWS::SES::ConfigurationSet")? {
        let props = properties(stack, &resource, &logical)?;
        let name = text(&props, "Name").unwrap_or_else(|| format!("{}-{logical}", stack.name));
        aws.rest(
            reqwest::Method::POST,
            "ses",
            "/v2/email/configuration-sets",
            Some(json!({"ConfigurationSetName": name})),
        )
        .await
        .with_context(|| format!("creating {logical}"))?;
        stack.set_physical(&logical, name, HashMap::new());
    }
    for (logical, resource) in stack.resources("AWS::SES::EmailIdentity")? {
        let props = properties(stack, &resource, &logical)?;
        let identity = text(&props, "EmailIdentity").context("EmailIdentity")?;
        aws.rest(reqwest::Method::POST, "ses", "/v2/email/identities", Some(json!({"EmailIdentity": identity})))
            .await
            .with_context(|| format!("creating {logical}"))?;
    }
    for (logical, resource) in stack.resources("AWS::SES::ConfigurationSetEventDestination")? {
        let props = properties(stack, &resource, &logical)?;
        let destination = prop(&props, "EventDestination").context("EventDestination")?;
        let Some(sns) = prop(&destination, "SnsDestination") else { continue };
        let event_types = match prop(&destination, "MatchingEventTypes") {
            Some(Resolved::List(types)) => {
                types.iter().filter_map(|t| t.text().ok()).map(|t| t.to_lowercase()).collect()
            }
            _ => Vec::new(),
        };
        created.mail_events.push(MailEventRoute {
            configuration_set: text(&props, "ConfigurationSetName").with_context(|| format!("{logical}'s set"))?,
            topic: text(&sns, "TopicARN").with_context(|| format!("{logical}'s topic"))?,
            event_types,
        });
    }

    // What deploy creates beside the stack: the signing keys (infra/deploy.sh).
    let secret = stack.reference("JwtKeysSecretName")?.text()?;
    aws.json("secretsmanager", "secretsmanager.CreateSecret", json!({"Name": secret, "SecretString": jwt_keys}))
        .await
        .context("creating the signing keys' secret")?;
    Ok(created)
}
