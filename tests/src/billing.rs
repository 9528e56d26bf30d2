//! Billing state for tests that need an account on a paid plan without going through
//! checkout (the billing flows test that path against Stripe's objects).

use shared::billing::{BillingState, Interval, SubscriptionStatus};
use shared::id::AccountId;
use shared::services::Services;
use shared::store::{Item, Put};

/// Puts `account` on `plan`, billed monthly at `unit_amount` (cents, USD), active.
///
/// # Panics
/// When the store fails.
pub async fn subscribe(services: &Services, account: AccountId, plan: &str, unit_amount: i64) {
    let state = BillingState {
        subscription_id: Some(format!("sub_{account}")),
        status: Some(SubscriptionStatus::Active),
        plan_id: Some(plan.to_owned()),
        interval: Some(Interval::Monthly),
        quantity: Some(1),
        unit_amount: Some(unit_amount),
        currency: Some("usd".into()),
        ..BillingState::default()
    };
    let item = Item::from_record(shared::keys::billing_state(account), &state).unwrap();
    services.store.put(Put::new(item)).await.unwrap();
}
