//! The billing function: the public plan catalogue and each account's subscription through
//! Stripe: Checkout (the customer is created once per account and reused; a trial on the
//! first subscription), the customer portal, plan changes (upgrades at once with proration;
//! downgrades at the period end through a subscription schedule), cancel at period end and
//! resume, and the state with its entitlements. Only owners and billing members change
//! billing (`Action::ManageBilling`); every Stripe call carries an idempotency key.
//!
//! State changes made here are applied at once from Stripe's answer; the webhook events that
//! follow apply the same snapshots again, harmlessly.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::billing::objects::{RedirectSession, Subscription, SubscriptionSchedule};
use shared::billing::snapshot::{self, apply_snapshot};
use shared::billing::stripe::{StripeClient, StripeError};
use shared::billing::{BillingState, Entitlements, Interval, state};
use shared::error::{ApiError, Problem};
use shared::http::{Json, RequestContext};
use shared::services::Services;
use shared::tenancy::{self, Action, Tenant, TenantScope};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::subscription::{UpdateSubscription, UpdateSubscriptionItems, UpdateSubscriptionProrationBehavior};
use stripe_billing::subscription_schedule::{
    CreateSubscriptionSchedule, UpdateSubscriptionSchedule, UpdateSubscriptionSchedulePhases,
    UpdateSubscriptionSchedulePhasesEndDate, UpdateSubscriptionSchedulePhasesItems,
    UpdateSubscriptionSchedulePhasesStartDate, UpdateSubscriptionScheduleProrationBehavior,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(utoipa::OpenApi)]
#[openapi(tags((name = "billing", description = "Plans, subscriptions, Stripe")))]
struct ApiDoc;

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_plans))
        .routes(routes!(get_billing))
        .routes(routes!(checkout))
        .routes(routes!(portal))
        .routes(routes!(change_plan))
        .routes(routes!(cancel))
        .routes(routes!(resume))
}

shared::function_routes!();

fn stripe(s: &Services) -> Result<&StripeClient, ApiError> {
    s.stripe.as_ref().ok_or_else(|| ApiError::Unavailable(anyhow::anyhow!("STRIPE_SECRET_KEY is not set")))
}

fn stripe_error(e: StripeError) -> ApiError {
    match e {
        e @ (StripeError::Transport(_) | StripeError::Unavailable { .. }) => ApiError::Unavailable(e.into()),
        e @ StripeError::Decode(_) => ApiError::Unexpected(e.into()),
        StripeError::Rejected { status, message } => {
            tracing::warn!(status, message = %message, "Stripe refused a request");
            ApiError::Conflict { code: "stripe_refused", detail: message }
        }
    }
}

fn apply_error(e: shared::billing::apply::ApplyError) -> ApiError {
    use shared::billing::apply::ApplyError;
    match e {
        ApplyError::Store(e) => e.into(),
        ApplyError::Stripe(e) => stripe_error(e),
        e => ApiError::Unexpected(e.into()),
    }
}

/// A plan as the catalogue shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PlanView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Feature keys.
    pub features: Vec<String>,
    /// Limits, by name (`seats`, `projects`...).
    pub limits: std::collections::BTreeMap<String, u64>,
}

/// The catalogue.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Catalogue {
    /// The paid plans, cheapest first.
    pub plans: Vec<PlanView>,
    /// What accounts without a subscription get.
    pub free: PlanView,
    /// Trial days of a first subscription.
    pub trial_days: u32,
    /// Whether the price is per member.
    pub per_seat: bool,
}

/// The plan catalogue (public).
#[utoipa::path(get, path = "/plans", tag = "billing", responses((status = 200, body = Catalogue)))]
async fn list_plans(State(s): State<Services>) -> Result<Json<Catalogue>, ApiError> {
    let p = &s.plans;
    let view =
        |id: &str, name: &str, f: &std::collections::BTreeSet<String>, l: &std::collections::BTreeMap<String, u64>| {
            PlanView { id: id.into(), name: name.into(), features: f.iter().cloned().collect(), limits: l.clone() }
        };
    Ok(Json(Catalogue {
        plans: p.plans.iter().map(|x| view(&x.id, &x.name, &x.features, &x.limits)).collect(),
        free: view("free", &p.free.name, &p.free.features, &p.free.limits),
        trial_days: p.trial_days,
        per_seat: p.per_seat,
    }))
}

/// An account's billing.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BillingView {
    /// The subscription as last known from Stripe.
    pub subscription: BillingState,
    /// What the account may use now.
    pub entitlements: Entitlements,
}

async fn view(s: &Services, account: shared::id::AccountId) -> Result<BillingView, ApiError> {
    let (mut state, _) = state(s.store.as_ref(), account).await?;
    let entitlements = s.entitlements(account).await?;
    state.as_of_event = String::new();
    state.entitlements = None;
    Ok(BillingView { subscription: state, entitlements })
}

/// The account's subscription state and entitlements.
#[utoipa::path(get, path = "/accounts/{account_id}/billing", tag = "billing", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = BillingView), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn get_billing(State(s): State<Services>, Tenant(scope): Tenant) -> Result<Json<BillingView>, ApiError> {
    scope.require(Action::ReadBilling)?;
    Ok(Json(view(&s, scope.account_id()).await?))
}

/// A plan and how often it is billed.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanChoice {
    /// A plan id of `/plans`.
    pub plan: String,
    /// `monthly` or `yearly`.
    pub interval: Interval,
}

/// A URL to send the person to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Redirect {
    /// Stripe's page.
    pub url: String,
}

fn chosen_price<'s>(s: &'s Services, choice: &PlanChoice) -> Result<(String, &'s shared::billing::Plan), ApiError> {
    let p = &s.plans;
    let plan = p
        .plan(&choice.plan)
        .ok_or_else(|| ApiError::Invalid { code: "unknown_plan", detail: "no such plan: see /plans".into() })?;
    let price = p
        .price(plan, choice.interval, &s.config.environment)
        .ok_or_else(|| ApiError::Invalid { code: "unknown_plan", detail: "that plan has no price here".into() })?;
    Ok((price, plan))
}

async fn quantity(s: &Services, scope: &TenantScope) -> Result<u64, ApiError> {
    if !s.plans.per_seat {
        return Ok(1);
    }
    Ok(tenancy::members(s.store.as_ref(), scope.account_id()).await?.len().max(1) as u64)
}

/// The account's Stripe customer, created (once: the idempotency key is the account) if
/// there is none.
async fn customer(s: &Services, scope: &TenantScope) -> Result<String, ApiError> {
    let (st, _) = state(s.store.as_ref(), scope.account_id()).await?;
    if let Some(c) = st.customer_id {
        return Ok(c);
    }
    let email = match scope.user_id() {
        Some(u) => shared::auth::users::by_id(s.store.as_ref(), u).await?.map(|x| x.email.to_string()),
        None => None,
    };
    let id = stripe(s)?
        .create_customer(&scope.account_id().to_string(), &scope.account().name, email.as_deref())
        .await
        .map_err(stripe_error)?;
    shared::billing::events::link_customer(&s.billing(), &id, scope.account_id()).await?;
    snapshot::update_state(&s.billing(), scope.account_id(), false, |st| {
        let missing = st.customer_id.is_none();
        if missing {
            st.customer_id = Some(id.clone());
        }
        Ok::<_, ApiError>(missing)
    })
    .await?;
    Ok(id)
}

fn billing_url(s: &Services, scope: &TenantScope, outcome: &str) -> String {
    format!("{}/accounts/{}/billing?checkout={outcome}", s.config.server.app_url, scope.account_id())
}

/// Starts a Stripe Checkout for a plan (with the trial on a first subscription).
#[utoipa::path(post, path = "/accounts/{account_id}/billing/checkout", tag = "billing", request_body = PlanChoice,
    security(("bearer" = [])), params(("account_id" = String, Path)),
    responses((status = 200, body = Redirect), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn checkout(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Json(choice): Json<PlanChoice>,
) -> Result<Json<Redirect>, ApiError> {
    scope.require(Action::ManageBilling)?;
    let (price, _) = chosen_price(&s, &choice)?;
    let (st, _) = state(s.store.as_ref(), scope.account_id()).await?;
    if st.status.is_some_and(|x| x.grants_plan()) {
        return Err(ApiError::Conflict {
            code: "already_subscribed",
            detail: "the account has a subscription: change its plan instead".into(),
        });
    }
    let customer = customer(&s, &scope).await?;
    let account = scope.account_id().to_string();
    let line = CreateCheckoutSessionLineItems {
        price: Some(price),
        quantity: Some(quantity(&s, &scope).await?),
        ..CreateCheckoutSessionLineItems::new()
    };
    let mut subscription = CreateCheckoutSessionSubscriptionData {
        metadata: Some(std::collections::HashMap::from([("account_id".to_owned(), account.clone())])),
        ..CreateCheckoutSessionSubscriptionData::new()
    };
    // The trial is for a first subscription only.
    if st.subscription_id.is_none() && s.plans.trial_days > 0 {
        subscription.trial_period_days = Some(s.plans.trial_days);
    }
    let request = CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Subscription)
        .customer(customer)
        .client_reference_id(account.clone())
        .line_items(vec![line])
        .subscription_data(subscription)
        .success_url(billing_url(&s, &scope, "success"))
        .cancel_url(billing_url(&s, &scope, "canceled"));
    let key = format!("checkout-{account}-{}", ctx.request_id);
    let session: RedirectSession = stripe(&s)?.send(&request, Some(&key)).await.map_err(stripe_error)?;
    let url = session.url.ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no checkout URL")))?;
    scope
        .audit(
            &s,
            AuditAction::BillingCheckoutStarted,
            None,
            ctx.origin(),
            json!({"plan": choice.plan, "interval": choice.interval}),
        )
        .await?;
    Ok(Json(Redirect { url }))
}

/// Opens Stripe's customer portal (payment methods, invoices).
#[utoipa::path(post, path = "/accounts/{account_id}/billing/portal", tag = "billing", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = Redirect), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn portal(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
) -> Result<([(axum::http::HeaderName, &'static str); 1], Json<Redirect>), ApiError> {
    scope.require(Action::ManageBilling)?;
    let (st, _) = state(s.store.as_ref(), scope.account_id()).await?;
    let Some(customer) = st.customer_id else {
        return Err(ApiError::Conflict { code: "no_customer", detail: "the account has never subscribed".into() });
    };
    let request = CreateBillingPortalSession::new().customer(customer).return_url(billing_url(&s, &scope, "portal"));
    let key = format!("portal-{}-{}", scope.account_id(), ctx.request_id);
    let session: RedirectSession = stripe(&s)?.send(&request, Some(&key)).await.map_err(stripe_error)?;
    let url = session.url.ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no portal URL")))?;
    // The URL signs its holder into the customer's billing: never cached, nor kept for an
    // idempotent replay (shared::http::idempotency).
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], Json(Redirect { url })))
}

/// The live subscription of the account, or 409.
async fn live(s: &Services, scope: &TenantScope) -> Result<(BillingState, String), ApiError> {
    let (st, _) = state(s.store.as_ref(), scope.account_id()).await?;
    match (&st.subscription_id, st.status) {
        (Some(id), Some(status)) if status.grants_plan() => {
            let id = id.clone();
            Ok((st, id))
        }
        _ => Err(ApiError::Conflict { code: "no_subscription", detail: "the account has no live subscription".into() }),
    }
}

async fn applied(s: &Services, scope: &TenantScope, sub: &Subscription) -> Result<Json<BillingView>, ApiError> {
    let source = format!("api:{}", s.clock.now_ms());
    apply_snapshot(&s.billing(), scope.account_id(), sub, s.clock.now_secs(), &source).await.map_err(apply_error)?;
    Ok(Json(view(s, scope.account_id()).await?))
}

/// Changes the plan: an upgrade applies at once with proration; a downgrade at the end of
/// the period.
#[utoipa::path(post, path = "/accounts/{account_id}/billing/change-plan", tag = "billing", request_body = PlanChoice,
    security(("bearer" = [])), params(("account_id" = String, Path)),
    responses((status = 200, body = BillingView), (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn change_plan(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
    Json(choice): Json<PlanChoice>,
) -> Result<Json<BillingView>, ApiError> {
    scope.require(Action::ManageBilling)?;
    let (price, plan) = chosen_price(&s, &choice)?;
    let (st, sub_id) = live(&s, &scope).await?;
    if st.plan_id.as_deref() == Some(plan.id.as_str()) && st.interval == Some(choice.interval) {
        return Err(ApiError::Conflict { code: "same_plan", detail: "the account is on that plan already".into() });
    }
    let p = &s.plans;
    let rank = |id: Option<&str>| id.and_then(|i| p.rank(i)).unwrap_or(0);
    let (from, to) = (rank(st.plan_id.as_deref()), rank(Some(&plan.id)));
    let upgrade = to > from || (to == from && choice.interval == Interval::Yearly);
    let client = stripe(&s)?;
    let item = st.item_id.clone().ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no subscription item")))?;
    let key = |what: &str| format!("{what}-{sub_id}-{}-{}", plan.id, ctx.request_id);
    let detail = json!({"from": st.plan_id, "to": plan.id, "interval": choice.interval, "upgrade": upgrade});
    if upgrade {
        let request = UpdateSubscription::new(sub_id.as_str())
            .items(vec![UpdateSubscriptionItems { id: Some(item), price: Some(price), ..Default::default() }])
            .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
            .cancel_at_period_end(false);
        let sub: Subscription = client.send(&request, Some(&key("upgrade"))).await.map_err(stripe_error)?;
        shared::audit::logged_after_commit(
            scope.audit(&s, AuditAction::BillingPlanChanged, Some(sub_id), ctx.origin(), detail).await,
            AuditAction::BillingPlanChanged.as_str(),
        );
        return applied(&s, &scope, &sub).await;
    }
    // Downgrade: a schedule keeps the current price until the period ends, then the new one.
    let request = CreateSubscriptionSchedule::new().from_subscription(sub_id.as_str());
    let schedule: SubscriptionSchedule = client.send(&request, Some(&key("schedule"))).await.map_err(stripe_error)?;
    let phase = schedule.phases.first();
    let (Some(start), Some(end)) = (phase.and_then(|p| p.start_date), phase.and_then(|p| p.end_date)) else {
        return Err(ApiError::Unexpected(anyhow::anyhow!("the subscription schedule has no current phase")));
    };
    // Every item of the current phase carries on (add-ons too); only the plan's item changes
    // price. The plan's item is the one at the current plan's price, or the only one.
    let items: Vec<(String, Option<u64>)> = phase
        .map(|p| p.items.iter().filter_map(|i| Some((i.price.as_ref()?.id().to_owned(), i.quantity))).collect())
        .unwrap_or_default();
    let current_plan_price = st
        .plan_id
        .as_deref()
        .and_then(|id| p.plans.iter().find(|plan| plan.id == id))
        .and_then(|plan| plan.prices.get(&s.config.environment))
        .map(|prices| if st.interval == Some(Interval::Yearly) { &prices.yearly } else { &prices.monthly });
    let plan_index = match items.iter().position(|(price, _)| Some(price) == current_plan_price) {
        Some(i) => i,
        None if items.len() == 1 => 0,
        None => {
            return Err(ApiError::Unexpected(anyhow::anyhow!(
                "the subscription schedule's current phase has no item at the current plan's price"
            )));
        }
    };
    let phase_item = |price: &str, quantity: Option<u64>| UpdateSubscriptionSchedulePhasesItems {
        price: Some(price.to_owned()),
        quantity,
        ..UpdateSubscriptionSchedulePhasesItems::new()
    };
    let current_items: Vec<_> = items.iter().map(|(price, q)| phase_item(price, *q)).collect();
    let next_items: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(i, (old, q))| if i == plan_index { phase_item(&price, q.or(st.quantity)) } else { phase_item(old, *q) })
        .collect();
    let current = UpdateSubscriptionSchedulePhases {
        start_date: Some(UpdateSubscriptionSchedulePhasesStartDate::Timestamp(start)),
        end_date: Some(UpdateSubscriptionSchedulePhasesEndDate::Timestamp(end)),
        ..UpdateSubscriptionSchedulePhases::new(current_items)
    };
    let request = UpdateSubscriptionSchedule::new(schedule.id.as_str())
        .end_behavior(stripe_shared::SubscriptionScheduleEndBehavior::Release)
        .phases(vec![current, UpdateSubscriptionSchedulePhases::new(next_items)])
        .proration_behavior(UpdateSubscriptionScheduleProrationBehavior::None);
    let _: SubscriptionSchedule = client.send(&request, Some(&key("phases"))).await.map_err(stripe_error)?;
    snapshot::update_state(&s.billing(), scope.account_id(), false, |st| {
        st.pending_plan_id = Some(plan.id.clone());
        st.pending_interval = Some(choice.interval);
        Ok::<_, ApiError>(true)
    })
    .await?;
    shared::audit::logged_after_commit(
        scope.audit(&s, AuditAction::BillingDowngradeScheduled, Some(sub_id), ctx.origin(), detail).await,
        AuditAction::BillingDowngradeScheduled.as_str(),
    );
    Ok(Json(view(&s, scope.account_id()).await?))
}

async fn set_cancel(
    s: &Services,
    ctx: &RequestContext,
    scope: &TenantScope,
    cancel: bool,
) -> Result<Json<BillingView>, ApiError> {
    scope.require(Action::ManageBilling)?;
    let (_, sub_id) = live(s, scope).await?;
    let key = format!("{}-{sub_id}-{}", if cancel { "cancel" } else { "resume" }, ctx.request_id);
    let sub = stripe(s)?.cancel_at_period_end(&sub_id, cancel, &key).await.map_err(stripe_error)?;
    let action = if cancel { AuditAction::BillingCancelScheduled } else { AuditAction::BillingResumed };
    shared::audit::logged_after_commit(
        scope.audit(s, action, Some(sub_id), ctx.origin(), json!({})).await,
        action.as_str(),
    );
    applied(s, scope, &sub).await
}

/// Cancels at the end of the current period (the plan stays until then).
#[utoipa::path(post, path = "/accounts/{account_id}/billing/cancel", tag = "billing", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = BillingView), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn cancel(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
) -> Result<Json<BillingView>, ApiError> {
    set_cancel(&s, &ctx, &scope, true).await
}

/// Undoes a pending cancellation.
#[utoipa::path(post, path = "/accounts/{account_id}/billing/resume", tag = "billing", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = BillingView), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn resume(
    State(s): State<Services>,
    ctx: RequestContext,
    Tenant(scope): Tenant,
) -> Result<Json<BillingView>, ApiError> {
    set_cancel(&s, &ctx, &scope, false).await
}
