//! Which addresses may sign up (`GROUNDWORK_SIGNUP_EMAIL_POLICY`): any, none at a disposable
//! mail service, or business addresses only (neither disposable nor at a free mail
//! provider). The lists are data files of maintained projects, pinned and refreshed by one
//! command (`infra/email-domains/update.sh`): the disposable-email-domains project's
//! blocklist and the `free-email-domains` list. A domain matches when it, or a domain it is
//! under, is listed (`inbox.mailinator.com` is disposable because `mailinator.com` is).

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::auth::config::EmailPolicy;
use crate::error::ApiError;
use crate::mail::EmailAddress;

fn parse(list: &'static str) -> HashSet<&'static str> {
    list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

static DISPOSABLE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| parse(include_str!("../../data/disposable_email_domains.txt")));
static FREE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| parse(include_str!("../../data/free_email_domains.txt")));

/// Whether `domain` or a domain it is under is in `list`.
fn listed(list: &HashSet<&'static str>, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut rest = domain.as_str();
    loop {
        if list.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

/// Whether `domain` is a disposable mail service.
pub fn is_disposable(domain: &str) -> bool {
    listed(&DISPOSABLE, domain)
}

/// Whether `domain` is a free mail provider (or a disposable service).
pub fn is_free_mail(domain: &str) -> bool {
    listed(&FREE, domain) || is_disposable(domain)
}

/// Applies `policy` to a sign-up's address.
///
/// # Errors
/// 422 `disposable_email` or `business_email_required`.
pub fn check(policy: EmailPolicy, address: &EmailAddress) -> Result<(), ApiError> {
    let domain = address.as_str().rsplit('@').next().unwrap_or_default();
    match policy {
        EmailPolicy::Allow => Ok(()),
        EmailPolicy::NoDisposable | EmailPolicy::BusinessOnly if is_disposable(domain) => Err(ApiError::Invalid {
            code: "disposable_email",
            detail: "addresses of disposable mail services cannot sign up: use a lasting address".into(),
        }),
        EmailPolicy::BusinessOnly if is_free_mail(domain) => Err(ApiError::Invalid {
            code: "business_email_required",
            detail: "sign up with your work address (free mail providers are not accepted)".into(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn the_lists_are_loaded_and_match_subdomains() {
        assert!(DISPOSABLE.len() > 1_000 && FREE.len() > 1_000);
        assert!(is_disposable("mailinator.com"));
        assert!(is_disposable("inbox.MAILINATOR.com."));
        assert!(!is_disposable("acme-industries.com"));
        assert!(is_free_mail("gmail.com"));
        assert!(is_free_mail("mailinator.com"), "disposable is free too");
        assert!(!is_free_mail("acme-industries.com"));
        assert!(!is_free_mail("com"), "a bare top-level domain is not matched");
    }

    #[test]
    fn each_policy_refuses_what_it_says() {
        let (throwaway, free, work) =
            (address("x@mailinator.com"), address("x@gmail.com"), address("x@acme-industries.com"));
        for a in [&throwaway, &free, &work] {
            assert!(check(EmailPolicy::Allow, a).is_ok());
        }
        assert!(matches!(
            check(EmailPolicy::NoDisposable, &throwaway),
            Err(ApiError::Invalid { code: "disposable_email", .. })
        ));
        assert!(check(EmailPolicy::NoDisposable, &free).is_ok());
        assert!(matches!(
            check(EmailPolicy::BusinessOnly, &free),
            Err(ApiError::Invalid { code: "business_email_required", .. })
        ));
        assert!(matches!(
            check(EmailPolicy::BusinessOnly, &throwaway),
            Err(ApiError::Invalid { code: "disposable_email", .. })
        ));
        assert!(check(EmailPolicy::BusinessOnly, &work).is_ok());
    }
}
