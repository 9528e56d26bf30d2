//! The key chart of the single table: every partition key, sort key and index key any
//! function writes is built here, by one constructor each, so an item's shape is decided in
//! one place. Other modules name items through these functions, never by formatting keys.
//!
//! `<sha256>` is the hex SHA-256 of a secret ([`crate::auth::hash_secret`]); timestamps in
//! sort keys are zero-padded to 13 digits (milliseconds), so they sort as numbers.
//!
//! | item | pk | sk | gsi1 (pk / sk) | gsi2 | owner | expiry |
//! |---|---|---|---|---|---|---|
//! | user | `USER#<user>` | `USER` | | purge | auth | |
//! | address owner | `EMAIL#<email>` | `EMAIL` | | | auth | |
//! | single-use link token | `TOKEN#<sha256>` | `TOKEN` | | | auth | 1 h / 24 h / 5 min |
//! | newest link of a purpose | `USER#<user>` | `LINK#<purpose>` | | | auth | its token's |
//! | session | `USER#<user>` | `SESSION#<session>` | | | auth | refresh TTL |
//! | refresh token | `REFRESH#<sha256>` | `REFRESH` | | | auth | refresh TTL |
//! | OIDC flow state | `OIDC#<sha256 of state>` | `STATE` | | | auth | 10 min |
//! | SAML request sent | `SAML_REQUEST#<sha256 of request ID>` | `REQUEST` | | | auth | 10 min |
//! | SAML assertion accepted | `SAML_ASSERTION#<org>#<sha256 of assertion ID>` | `ASSERTION` | | | auth | the assertion's `NotOnOrAfter` + skew |
//! | linked identity | `IDENTITY#<sha256 of issuer>#<subject>` | `IDENTITY` | `IDENTITIES#<user>` / identity pk | | auth | |
//! | external subject | `EXTERNAL#<sha256 of issuer>#<subject>` | `USER` | | | auth (rent-auth) | |
//! | attempt counter | `RATE#<limit>#<digest>` | `<window start ms>` | | | auth | window end |
//! | request rate (GCRA) | `RATE#<policy>#<digest>` | `GCRA` | | | http | when full again |
//! | account | `ACCOUNT#<account>` | `ACCOUNT` | `ACCOUNTS` / `<account>` (the directory) | purge (whole partition) | tenancy | |
//! | membership | `ACCOUNT#<account>` | `MEMBER#<user>` | `MEMBERSHIPS#<user>` / `<account>` | purge | tenancy | |
//! | invitation | `ACCOUNT#<account>` | `INVITE#<invitation>` | | | tenancy | 7 days |
//! | invitation token | `INVITATION#<sha256>` | `TOKEN` | | | tenancy | 7 days |
//! | API key | `ACCOUNT#<account>` | `APIKEY#<key>` | `APIKEY#<key>` / `APIKEY` | | tenancy | |
//! | tenant item | `ACCOUNT#<account>` | `<KIND>#<id>` | | purge | product functions | |
//! | product event | `ACCOUNT#<account>` | `EVENT#<at ms>#<event>` | `PRODUCT_EVENTS#PENDING#<shard 0-7>` / `<at ms>#<account>#<sk>` until forwarded (`PRODUCT_EVENTS#DEAD` if refused) | | any function | 400 days |
//! | flag override | `ACCOUNT#<account>` | `FLAG#<flag>` | | | platform | |
//! | account health (latest) | `ACCOUNT#<account>` | `HEALTH` | `ACCOUNT_HEALTH` / `<risk rank>#<account>` | | scheduled | |
//! | account health of a day | `ACCOUNT#<account>` | `HEALTH#<yyyy-mm-dd>` | | | scheduled | 400 days |
//! | upgrade trigger | `ACCOUNT#<account>` | `UPGRADE_TRIGGER#<limit>#<yyyy-mm>` | | | scheduled | 400 days |
//! | billing state | `ACCOUNT#<account>` | `BILLING` | | | billing | |
//! | API requests of a month | `ACCOUNT#<account>` | `API_USAGE#<yyyy-mm>` | | | http | 400 days |
//! | organization | `ORG#<org>` | `ORG` | | | tenancy | |
//! | organization's account | `ORG#<org>` | `ACCOUNT#<account>` | | | tenancy | |
//! | organization's domain claim | `ORG#<org>` | `DOMAIN#<domain>` | | | tenancy | |
//! | verified domain's owner | `DOMAIN#<domain>` | `OWNER` | | | tenancy | |
//! | SCIM directory (settings, token hash) | `ORG#<org>` | `SCIM` | | | tenancy | |
//! | SCIM directory token | `SCIM_TOKEN#<sha256>` | `TOKEN` | | | tenancy | |
//! | SCIM user | `ORG#<org>` | `SCIM_USER#<id>` | | | tenancy | |
//! | SCIM `userName` holder | `ORG#<org>` | `SCIM_USERNAME#<lowercase userName>` | | | tenancy | |
//! | SCIM user's linked user | `ORG#<org>` | `SCIM_LINK#<user>` | | | tenancy | |
//! | SCIM group | `ORG#<org>` | `SCIM_GROUP#<id>` | | | tenancy | |
//! | request to join (domain) | `ACCOUNT#<account>` | `JOIN_REQUEST#<user>` | | purge | tenancy | 30 days |
//! | Stripe customer | `STRIPE_CUSTOMER#<customer>` | `ACCOUNT` | | | billing | |
//! | billed account | `BILLING#CUSTOMERS` | `<account>` | | | billing | |
//! | pending cancellation | `BILLING#PENDING_CANCELLATION` | `<account>` | | | billing | |
//! | one-time billing effect | `BILLING_EFFECT#<effect>` | `EFFECT` | | | billing | |
//! | Stripe event ledger | `STRIPE_EVENT#<event>` | `EVENT` | `STRIPE_EVENTS#failed` / `<event>` when failed | | billing | |
//! | flag definition | `FLAGS` | `FLAG#<flag>` | | | platform | |
//! | data export | `EXPORT#<export>` | `EXPORT` | | | worker | 7 days; 72 h once built |
//! | audit head | `AUDIT#<stream>` | `HEAD` | | | audit | |
//! | audit entry | `AUDIT#<stream>` | `E#<seq, 12 digits>` | | | audit | |
//! | job state | `JOB#<job>` | `STATE` | `JOBS#dead` / `<updated ms>#<job>` when dead | | jobs | 30 days |
//! | job idempotency | `IDEMPOTENCY#<key>` | `RECORD` | | | jobs | lease, then 7 days |
//! | idempotent request | `IDEMPOTENT_REQUEST#<caller>#<sha256 of key>` | `ANSWER` | | | http | 1 min running, then 24 h |
//! | staged job (outbox) | `OUTBOX#<shard 0-7>` | `<staged ms>#<job>` | | | jobs | 7 days |
//! | suppression | `SUPPRESSION#<email>` | `SUPPRESSION` | | | mail | |
//! | smoke mailbox message | `SMOKE_MAIL#<email>` | `<job>` | | | mail (smoke mailbox) | 1 h |
//! | data migration | `MIGRATIONS` | `MIGRATION#<n, 4 digits>` | | | migrations | |
//! | migration lock | `MIGRATIONS` | `LOCK` | | | migrations | lease |
//! | open incident | `INCIDENTS` | `OPEN#<alarm>` | | | incidents | |
//! | closed incident | `INCIDENTS` | `CLOSED#<alarm>#<started ms, 13 digits>` | | | incidents | 400 days |
//!
//! gsi2 is reserved for the soft-delete purge index: partition `PURGE`, sort key
//! `<purge after ms>#<pk>#<sk>` ([`purge_index`]).

use std::fmt::Display;

use crate::id::{AccountId, OrgId, SessionId, UserId};
use crate::store::Key;

// Users and sign-in (auth).

/// The partition of a user: the user record and their sessions.
pub fn user_partition(user: UserId) -> String {
    format!("USER#{user}")
}

/// A user's record.
pub fn user(user: UserId) -> Key {
    Key::new(user_partition(user), "USER")
}

/// The owner record of an email address (uniqueness of addresses).
pub fn email_owner(email: impl Display) -> Key {
    Key::new(format!("EMAIL#{email}"), "EMAIL")
}

/// A single-use link token (verification, reset, MFA challenge), by its hash.
pub fn link_token(token_hash: &str) -> Key {
    Key::new(format!("TOKEN#{token_hash}"), "TOKEN")
}

/// The newest link of a purpose whose new links end the older ones (`reset_password`).
pub fn latest_link(user: UserId, purpose: &str) -> Key {
    Key::new(user_partition(user), format!("LINK#{purpose}"))
}

/// The sort-key prefix of a user's sessions.
pub const SESSION_PREFIX: &str = "SESSION#";

/// A session of a user.
pub fn session(user: UserId, session: SessionId) -> Key {
    Key::new(user_partition(user), format!("{SESSION_PREFIX}{session}"))
}

/// A refresh token, by its hash.
pub fn refresh_token(token_hash: &str) -> Key {
    Key::new(format!("REFRESH#{token_hash}"), "REFRESH")
}

/// The state of an OpenID Connect login in flight, by the hash of its `state`.
pub fn oidc_state(state_hash: &str) -> Key {
    Key::new(format!("OIDC#{state_hash}"), "STATE")
}

/// A SAML `AuthnRequest` we sent, by the hash of its ID: spent by the response that answers it.
pub fn saml_request(request_id_hash: &str) -> Key {
    Key::new(format!("SAML_REQUEST#{request_id_hash}"), "REQUEST")
}

/// A SAML assertion accepted for an organization, by the hash of its ID: a replay finds it.
pub fn saml_assertion(org: OrgId, assertion_id_hash: &str) -> Key {
    Key::new(format!("SAML_ASSERTION#{org}#{assertion_id_hash}"), "ASSERTION")
}

/// An identity at an OpenID Connect provider linked to a user.
pub fn identity(issuer_hash: &str, subject: &str) -> Key {
    Key::new(format!("IDENTITY#{issuer_hash}#{subject}"), "IDENTITY")
}

/// The gsi1 partition listing a user's linked identities.
pub fn identities_of(user: UserId) -> String {
    format!("IDENTITIES#{user}")
}

/// The gsi1 entry of a linked identity.
pub fn identity_index(user: UserId, identity: &Key) -> Key {
    Key::new(identities_of(user), identity.pk.clone())
}

/// The user an external issuer's subject maps to (rent-auth mode).
pub fn external_subject(issuer_hash: &str, subject: &str) -> Key {
    Key::new(format!("EXTERNAL#{issuer_hash}#{subject}"), "USER")
}

/// An attempt counter of `limit` for one subject (digest) in the window starting at
/// `window_start_ms`.
pub fn rate_window(limit: &str, subject_digest: &str, window_start_ms: i64) -> Key {
    Key::new(format!("RATE#{limit}#{subject_digest}"), format!("{window_start_ms:013}"))
}

/// The theoretical arrival time of a request rate (GCRA) of `policy` for one subject
/// (digest).
pub fn rate_bucket(policy: &str, subject_digest: &str) -> Key {
    Key::new(format!("RATE#{policy}#{subject_digest}"), "GCRA")
}

// Tenancy.

/// The partition of everything an account owns.
pub fn account_partition(account: AccountId) -> String {
    format!("ACCOUNT#{account}")
}

/// An account's record.
pub fn account(account: AccountId) -> Key {
    Key::new(account_partition(account), "ACCOUNT")
}

/// The gsi1 partition listing every account (the directory operators page through).
pub const ACCOUNT_DIRECTORY: &str = "ACCOUNTS";

/// An account's entry in the directory: [`ACCOUNT_DIRECTORY`] / the account id (a ULID, so
/// the directory is in creation order).
pub fn account_directory_entry(account: AccountId) -> Key {
    Key::new(ACCOUNT_DIRECTORY, account.to_string())
}

/// The sort-key prefix of an account's memberships.
pub const MEMBER_PREFIX: &str = "MEMBER#";

/// A membership.
pub fn membership(account: AccountId, user: UserId) -> Key {
    Key::new(account_partition(account), format!("{MEMBER_PREFIX}{user}"))
}

/// The gsi1 partition listing a user's memberships.
pub fn memberships_of(user: UserId) -> String {
    format!("MEMBERSHIPS#{user}")
}

/// The gsi1 entry of a membership.
pub fn membership_index(account: AccountId, user: UserId) -> Key {
    Key::new(memberships_of(user), account.to_string())
}

/// The sort-key prefix of an account's invitations.
pub const INVITATION_PREFIX: &str = "INVITE#";

/// An invitation.
pub fn invitation(account: AccountId, invitation: impl Display) -> Key {
    Key::new(account_partition(account), format!("{INVITATION_PREFIX}{invitation}"))
}

/// An invitation's token, by its hash.
pub fn invitation_token(token_hash: &str) -> Key {
    Key::new(format!("INVITATION#{token_hash}"), "TOKEN")
}

/// The sort-key prefix of an account's API keys.
pub const API_KEY_PREFIX: &str = "APIKEY#";

/// An API key of an account.
pub fn api_key(account: AccountId, key: impl Display) -> Key {
    Key::new(account_partition(account), format!("{API_KEY_PREFIX}{key}"))
}

/// The gsi1 partition that finds an API key by its id.
pub fn api_key_lookup(key: impl Display) -> String {
    format!("{API_KEY_PREFIX}{key}")
}

/// The gsi1 entry of an API key.
pub fn api_key_index(key: impl Display) -> Key {
    Key::new(api_key_lookup(key), "APIKEY")
}

/// The sort-key prefix of an account's webhook endpoints.
pub const WEBHOOK_ENDPOINT_PREFIX: &str = "WEBHOOK#";

/// A webhook endpoint of an account.
pub fn webhook_endpoint(account: AccountId, endpoint: impl Display) -> Key {
    Key::new(account_partition(account), format!("{WEBHOOK_ENDPOINT_PREFIX}{endpoint}"))
}

/// A webhook message of an account, by its id (`webhook-id`).
pub fn webhook_message(account: AccountId, message: &str) -> Key {
    Key::new(account_partition(account), format!("WHMSG#{message}"))
}

/// The gsi1 partition that lists an account's webhook messages by when they were published.
pub fn webhook_messages(account: AccountId) -> String {
    format!("WHMSGS#{account}")
}

/// The gsi1 entry of a webhook message.
pub fn webhook_message_index(account: AccountId, published_at_ms: i64, message: &str) -> Key {
    Key::new(webhook_messages(account), webhook_message_after(published_at_ms, message))
}

/// The gsi1 sort key of a message published at `at_ms` (a bound for "since" queries).
pub fn webhook_message_after(at_ms: i64, message: &str) -> String {
    format!("{:013}#{message}", at_ms.max(0))
}

/// The sort-key prefix of one endpoint's delivery attempts (oldest first).
pub fn webhook_attempts_of(endpoint: impl Display) -> String {
    format!("WHATT#{endpoint}#")
}

/// One delivery attempt to a webhook endpoint.
pub fn webhook_attempt(account: AccountId, endpoint: impl Display, attempt: impl Display) -> Key {
    Key::new(account_partition(account), format!("{}{attempt}", webhook_attempts_of(endpoint)))
}

/// One of an account's items of `kind` (`ACCOUNT#<account>` / `<kind>#<id>`).
pub fn tenant_item(account: AccountId, kind: &str, id: &str) -> Key {
    Key::new(account_partition(account), format!("{kind}#{id}"))
}

/// The sort-key prefix of an account's items of `kind`.
pub fn tenant_kind_prefix(kind: &str) -> String {
    format!("{kind}#")
}

/// A product event of an account, sorted by when it happened.
pub fn product_event(account: AccountId, at_ms: i64, event: impl Display) -> Key {
    Key::new(account_partition(account), format!("{PRODUCT_EVENT_PREFIX}{:013}#{event}", at_ms.max(0)))
}

/// The sort-key prefix of an account's product events.
pub const PRODUCT_EVENT_PREFIX: &str = "EVENT#";

/// An account's latest health record (`shared::account_health`).
pub fn account_health(account: AccountId) -> Key {
    Key::new(account_partition(account), "HEALTH")
}

/// The sort-key prefix of an account's daily health records.
pub const ACCOUNT_HEALTH_DAY_PREFIX: &str = "HEALTH#";

/// An account's health record of `day` (`yyyy-mm-dd`).
pub fn account_health_day(account: AccountId, day: &str) -> Key {
    Key::new(account_partition(account), format!("{ACCOUNT_HEALTH_DAY_PREFIX}{day}"))
}

/// The gsi1 partition listing every account's latest health, riskiest first.
pub const ACCOUNT_HEALTH_INDEX: &str = "ACCOUNT_HEALTH";

/// An account's entry in the health list: its status's risk rank, then the account.
pub fn account_health_index(rank: u8, account: AccountId) -> Key {
    Key::new(ACCOUNT_HEALTH_INDEX, format!("{rank}#{account}"))
}

/// An upgrade trigger: `limit` passed the threshold in `month` (`yyyy-mm`).
pub fn upgrade_trigger(account: AccountId, limit: &str, month: &str) -> Key {
    Key::new(account_partition(account), format!("UPGRADE_TRIGGER#{limit}#{month}"))
}

/// The gsi1 partition of the product events of shard `shard` not yet forwarded.
pub fn product_events_pending_partition(shard: u8) -> String {
    format!("PRODUCT_EVENTS#PENDING#{shard}")
}

/// A product event's entry in the pending-forwarding index (gsi1), oldest first.
pub fn product_event_pending(shard: u8, at_ms: i64, account: AccountId, event_sk: &str) -> Key {
    Key::new(product_events_pending_partition(shard), format!("{:013}#{account}#{event_sk}", at_ms.max(0)))
}

/// The gsi1 partition of the product events the forwarding destination refused for good.
pub const PRODUCT_EVENTS_DEAD: &str = "PRODUCT_EVENTS#DEAD";

/// The kept answer of a `POST` sent with an `Idempotency-Key` by `caller` (`user:<id>` or
/// `apikey:<id>`).
pub fn idempotent_request(caller: &str, key_hash: &str) -> Key {
    Key::new(format!("IDEMPOTENT_REQUEST#{caller}#{key_hash}"), "ANSWER")
}

/// The count of `account`'s API requests in the calendar month `month` (`yyyy-mm`, UTC).
pub fn api_usage(account: AccountId, month: &str) -> Key {
    Key::new(account_partition(account), format!("API_USAGE#{month}"))
}

/// The partition of an organization.
pub fn org_partition(org: OrgId) -> String {
    format!("ORG#{org}")
}

/// An organization's record.
pub fn organization(org: OrgId) -> Key {
    Key::new(org_partition(org), "ORG")
}

/// The sort-key prefix of an organization's accounts.
pub const ORG_ACCOUNT_PREFIX: &str = "ACCOUNT#";

/// The link of an account to its organization.
pub fn org_account(org: OrgId, account: AccountId) -> Key {
    Key::new(org_partition(org), format!("{ORG_ACCOUNT_PREFIX}{account}"))
}

/// The sort-key prefix of an organization's domain claims.
pub const ORG_DOMAIN_PREFIX: &str = "DOMAIN#";

/// An organization's claim of an email domain (ASCII form, lowercase).
pub fn org_domain(org: OrgId, domain: &str) -> Key {
    Key::new(org_partition(org), format!("{ORG_DOMAIN_PREFIX}{domain}"))
}

/// The one organization that verified `domain`: first verified wins.
pub fn domain_owner(domain: &str) -> Key {
    Key::new(format!("DOMAIN#{domain}"), "OWNER")
}

/// An organization's SCIM directory: its settings and its token's hash.
pub fn scim_directory(org: OrgId) -> Key {
    Key::new(org_partition(org), "SCIM")
}

/// A SCIM directory token, by the SHA-256 of its secret: which organization it speaks for.
pub fn scim_token(token_hash: &str) -> Key {
    Key::new(format!("SCIM_TOKEN#{token_hash}"), "TOKEN")
}

/// The sort-key prefix of a directory's users.
pub const SCIM_USER_PREFIX: &str = "SCIM_USER#";

/// A user of an organization's SCIM directory (the resource as its identity provider wrote it).
pub fn scim_user(org: OrgId, id: impl Display) -> Key {
    Key::new(org_partition(org), format!("{SCIM_USER_PREFIX}{id}"))
}

/// The sort-key prefix of a directory's `userName` holders.
pub const SCIM_USER_NAME_PREFIX: &str = "SCIM_USERNAME#";

/// The holder of a `userName` in a directory (lowercase: `userName` is not case-exact).
pub fn scim_user_name(org: OrgId, user_name: &str) -> Key {
    Key::new(org_partition(org), format!("{SCIM_USER_NAME_PREFIX}{}", user_name.to_lowercase()))
}

/// The sort-key prefix of a directory's links to Groundwork users.
pub const SCIM_LINK_PREFIX: &str = "SCIM_LINK#";

/// The directory user linked to a Groundwork user (one per user and directory).
pub fn scim_link(org: OrgId, user: UserId) -> Key {
    Key::new(org_partition(org), format!("{SCIM_LINK_PREFIX}{user}"))
}

/// The sort-key prefix of a directory's groups.
pub const SCIM_GROUP_PREFIX: &str = "SCIM_GROUP#";

/// A group of an organization's SCIM directory.
pub fn scim_group(org: OrgId, id: impl Display) -> Key {
    Key::new(org_partition(org), format!("{SCIM_GROUP_PREFIX}{id}"))
}

/// The sort-key prefix of an account's requests to join.
pub const JOIN_REQUEST_PREFIX: &str = "JOIN_REQUEST#";

/// A user's request to join an account their verified domain suggested.
pub fn join_request(account: AccountId, user: UserId) -> Key {
    Key::new(account_partition(account), format!("{JOIN_REQUEST_PREFIX}{user}"))
}

// Feature flags.

/// The partition of every flag definition.
pub const FLAGS_PARTITION: &str = "FLAGS";

/// The sort-key prefix of flags, in [`FLAGS_PARTITION`] and in an account's partition.
pub const FLAG_PREFIX: &str = "FLAG#";

/// A flag's definition.
pub fn flag(key: &str) -> Key {
    Key::new(FLAGS_PARTITION, format!("{FLAG_PREFIX}{key}"))
}

/// An account's override of a flag.
pub fn flag_override(account: AccountId, key: &str) -> Key {
    Key::new(account_partition(account), format!("{FLAG_PREFIX}{key}"))
}

// Billing.

/// An account's billing state.
pub fn billing_state(account: AccountId) -> Key {
    Key::new(account_partition(account), "BILLING")
}

/// The account a Stripe customer belongs to.
pub fn stripe_customer(customer: &str) -> Key {
    Key::new(format!("STRIPE_CUSTOMER#{customer}"), "ACCOUNT")
}

/// The partition listing every account with a Stripe customer (for reconciliation).
pub const BILLED_ACCOUNTS: &str = "BILLING#CUSTOMERS";

/// An account's entry in [`BILLED_ACCOUNTS`].
pub fn billed_account(account: AccountId) -> Key {
    Key::new(BILLED_ACCOUNTS, account.to_string())
}

/// The partition of deleted accounts whose subscription awaits cancellation.
pub const PENDING_CANCELLATIONS: &str = "BILLING#PENDING_CANCELLATION";

/// An account's entry in [`PENDING_CANCELLATIONS`].
pub fn pending_cancellation(account: AccountId) -> Key {
    Key::new(PENDING_CANCELLATIONS, account.to_string())
}

/// The marker claiming a one-time billing side effect (an email), once.
pub fn billing_effect(effect: &str) -> Key {
    Key::new(format!("BILLING_EFFECT#{effect}"), "EFFECT")
}

/// A Stripe event's ledger entry.
pub fn stripe_event(event: &str) -> Key {
    Key::new(format!("STRIPE_EVENT#{event}"), "EVENT")
}

/// The gsi1 partition of ledger events that failed.
pub const FAILED_STRIPE_EVENTS: &str = "STRIPE_EVENTS#failed";

/// The gsi1 entry of a failed ledger event.
pub fn failed_stripe_event(event: &str) -> Key {
    Key::new(FAILED_STRIPE_EVENTS, event)
}

// Exports, audit, jobs, mail.

/// A data export's record.
pub fn export(export: impl Display) -> Key {
    Key::new(format!("EXPORT#{export}"), "EXPORT")
}

/// The partition of an audit stream.
pub fn audit_partition(stream: impl Display) -> String {
    format!("AUDIT#{stream}")
}

/// The head of an audit stream (its last sequence number and hash).
pub fn audit_head(stream: impl Display) -> Key {
    Key::new(audit_partition(stream), "HEAD")
}

/// The sort-key prefix of audit entries.
pub const AUDIT_ENTRY_PREFIX: &str = "E#";

/// An audit entry.
pub fn audit_entry(stream: impl Display, seq: u64) -> Key {
    Key::new(audit_partition(stream), format!("{AUDIT_ENTRY_PREFIX}{seq:012}"))
}

/// A job's operator-visible state.
pub fn job_state(job: &str) -> Key {
    Key::new(format!("JOB#{job}"), "STATE")
}

/// The gsi1 partition of dead-lettered jobs.
pub const DEAD_JOBS: &str = "JOBS#dead";

/// The gsi1 entry of a dead job, newest last.
pub fn dead_job(updated_at_ms: i64, job: &str) -> Key {
    Key::new(DEAD_JOBS, format!("{updated_at_ms:013}#{job}"))
}

/// The idempotency record (lease, then completion) of a job key.
pub fn job_idempotency(key: &str) -> Key {
    Key::new(format!("IDEMPOTENCY#{key}"), "RECORD")
}

/// An address on the suppression list.
pub fn suppression(email: impl Display) -> Key {
    Key::new(format!("SUPPRESSION#{email}"), "SUPPRESSION")
}

// Soft delete.

/// The gsi2 partition holding every soft-deleted item.
pub const PURGE_PARTITION: &str = "PURGE";

/// The gsi2 entry of a soft-deleted item, sorted by when it is purged.
pub fn purge_index(purge_after_ms: i64, item: &Key) -> Key {
    Key::new(PURGE_PARTITION, format!("{purge_after_ms:013}#{}#{}", item.pk, item.sk))
}

// The job outbox (jobs).

/// The partition of job outbox shard `shard`.
pub fn job_outbox_partition(shard: u32) -> String {
    format!("OUTBOX#{shard}")
}

/// A job staged in outbox shard `shard` at `staged_at_ms`.
pub fn staged_job(shard: u32, staged_at_ms: i64, job: impl Display) -> Key {
    Key::new(job_outbox_partition(shard), format!("{:013}#{job}", staged_at_ms.max(0)))
}

/// The sort key that ends the staged jobs of one shard at `before_ms` (for a range query).
pub fn staged_before(before_ms: i64) -> String {
    format!("{:013}~", before_ms.max(0))
}

// The smoke mailbox.

/// The partition of the messages kept for one smoke address.
pub fn smoke_mailbox(address: &str) -> String {
    format!("SMOKE_MAIL#{address}")
}

/// A message kept for `address`, by the job that sent it.
pub fn smoke_mail(address: &str, job_id: &str) -> Key {
    Key::new(smoke_mailbox(address), job_id)
}

// Data migrations.

/// The partition of the data migrations' records and their lock.
pub const MIGRATIONS: &str = "MIGRATIONS";

/// The record of data migration `number`.
pub fn migration(number: u32) -> Key {
    Key::new(MIGRATIONS, format!("MIGRATION#{number:04}"))
}

/// The sort-key prefix of the migrations' records.
pub const MIGRATION_PREFIX: &str = "MIGRATION#";

/// The lock one migration runner holds at a time.
pub fn migration_lock() -> Key {
    Key::new(MIGRATIONS, "LOCK")
}

// Incidents (time to recovery).

/// The partition of the alarms' incidents.
pub const INCIDENTS: &str = "INCIDENTS";

/// The sort-key prefix of open incidents.
pub const OPEN_INCIDENT_PREFIX: &str = "OPEN#";

/// The open incident of an alarm.
pub fn open_incident(alarm: &str) -> Key {
    Key::new(INCIDENTS, format!("{OPEN_INCIDENT_PREFIX}{alarm}"))
}

/// A closed incident of an alarm, by when it started (Unix ms).
pub fn closed_incident(alarm: &str, started_at_ms: i64) -> Key {
    Key::new(INCIDENTS, format!("CLOSED#{alarm}#{started_at_ms:013}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_with_numbers_sort_as_numbers() {
        assert!(audit_entry("s", 9).sk < audit_entry("s", 10).sk);
        assert!(dead_job(999, "a").sk < dead_job(1_000, "a").sk);
        assert!(rate_window("l", "d", 5).sk < rate_window("l", "d", 40).sk);
    }

    #[test]
    fn tenant_items_stay_in_their_account() {
        let a = AccountId::new();
        for key in [
            account(a),
            membership(a, UserId::new()),
            invitation(a, "i"),
            api_key(a, "k"),
            tenant_item(a, "PROJECT", "p"),
            flag_override(a, "f"),
            billing_state(a),
            api_usage(a, "2026-11"),
        ] {
            assert_eq!(key.pk, account_partition(a));
        }
    }
}
