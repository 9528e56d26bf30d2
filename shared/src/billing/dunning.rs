//! Dunning and trial emails: one-time side effects of Stripe events, each claimed once by a
//! marker item (`BILLING_EFFECT#<key>`) written with a not-exists condition before the email
//! is queued, so a redelivered event never emails twice.

use super::objects::{Invoice, Subscription};

use super::Billing;
use super::apply::ApplyError;
use crate::id::AccountId;
use crate::jobs::Job;
use crate::keys;
use crate::mail::EmailAddress;
use crate::mail::templates::Email;
use crate::store::{Item, Put, StoreError};
use crate::tenancy::{self, Role};

/// Claims the one-time side effect `key`: true the first time only.
///
/// # Errors
/// When the store fails.
pub async fn claim_effect(s: &Billing<'_>, key: &str) -> Result<bool, StoreError> {
    let marker = Item::new(keys::billing_effect(key)).with("at_ms", s.clock.now_ms());
    match s.store.put(Put::new(marker).if_not_exists()).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_condition_failure() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The addresses of an account's owners and billing members.
async fn billing_contacts(s: &Billing<'_>, account: AccountId) -> Result<Vec<EmailAddress>, StoreError> {
    let mut out = Vec::new();
    for m in tenancy::members(s.store, account).await? {
        if matches!(m.role, Role::Owner | Role::Billing)
            && let Some(u) = crate::auth::users::by_id(s.store, m.user_id).await?
        {
            out.push(u.email);
        }
    }
    Ok(out)
}

fn billing_link(s: &Billing<'_>, account: AccountId) -> String {
    format!("{}/accounts/{account}/billing", s.app_url)
}

async fn account_name(s: &Billing<'_>, account: AccountId) -> Result<String, StoreError> {
    Ok(tenancy::load_account(s.store, account).await?.map_or_else(|| "your account".into(), |(a, _)| a.name))
}

pub(super) async fn dunning_email(
    s: &Billing<'_>,
    account: AccountId,
    invoice: &Invoice,
    kind: &str,
) -> Result<(), ApplyError> {
    let Some(invoice_id) = invoice.id.as_deref() else { return Ok(()) };
    if !claim_effect(s, &format!("{kind}:{invoice_id}")).await? {
        return Ok(());
    }
    let cents = invoice.amount_due;
    let currency = invoice.currency.as_deref().unwrap_or("usd").to_ascii_uppercase();
    let amount = format!("{}.{:02} {currency}", cents / 100, cents % 100);
    let name = account_name(s, account).await?;
    for to in billing_contacts(s, account).await? {
        let email =
            Email::PaymentFailed { account_name: name.clone(), amount: amount.clone(), link: billing_link(s, account) };
        let key = format!("{kind}:{invoice_id}:{to}");
        s.jobs().enqueue_with_key(Job::SendEmail { to, email }, crate::jobs::JobId::new(), key).await?;
    }
    Ok(())
}

pub(super) async fn trial_email(s: &Billing<'_>, account: AccountId, sub: &Subscription) -> Result<(), ApplyError> {
    let (id, Some(trial_end)) = (&sub.id, sub.trial_end) else { return Ok(()) };
    if !claim_effect(s, &format!("trial_will_end:{id}:{trial_end}")).await? {
        return Ok(());
    }
    let name = account_name(s, account).await?;
    let (state, _) = super::state(s.store, account).await?;
    let plan_name = state.plan_id.unwrap_or_else(|| "your plan".into());
    let day = trial_end / 86_400;
    let trial_ends_on = format!("{} (UTC)", civil_date(day));
    for to in billing_contacts(s, account).await? {
        let email = Email::TrialEnding {
            account_name: name.clone(),
            plan_name: plan_name.clone(),
            trial_ends_on: trial_ends_on.clone(),
            link: billing_link(s, account),
        };
        let key = format!("trial_will_end:{id}:{trial_end}:{to}");
        s.jobs().enqueue_with_key(Job::SendEmail { to, email }, crate::jobs::JobId::new(), key).await?;
    }
    Ok(())
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (proleptic Gregorian).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_date(0), "1970-01-01");
        assert_eq!(super::civil_date(20_819), "2027-01-01");
        assert_eq!(super::civil_date(11_016), "2000-02-29");
    }
}
