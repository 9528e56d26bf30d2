//! Two-factor authentication with TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, one
//! step of skew) and single-use recovery codes. A code is accepted once: the last accepted
//! step is stored and a code of that step or an earlier one is refused, so a code seen over a
//! shoulder cannot be replayed. Recovery codes are stored hashed and removed when used.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditAction;
use shared::auth::rate_limit::{self, MFA_PER_USER};
use shared::auth::users::{self, Mfa};
use shared::auth::{AuthUser, hash_secret, random_secret};
use shared::error::{ApiError, Problem};
use shared::http::{Json, RequestContext};
use shared::secret::Secret;
use shared::services::Services;
use totp_rs::{Algorithm, Builder, Totp};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::sessions;

/// How many recovery codes a user gets.
pub const RECOVERY_CODES: usize = 10;

/// A TOTP for `secret` (base32), labelled with the product and the account.
///
/// # Errors
/// If the secret is not valid base32 of at least 128 bits.
pub fn totp(secret_base32: &str, issuer: &str, account: &str) -> anyhow::Result<Totp> {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).map_err(|e| anyhow::anyhow!("TOTP secret: {e:?}"))?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|e| anyhow::anyhow!("TOTP: {e:?}"))
}

/// A fresh 160-bit TOTP secret, base32.
///
/// # Errors
/// If the system's random source fails.
pub fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(totp_rs::Secret::from(bytes.to_vec()).to_base32())
}

/// The step a code belongs to, if it is valid now (within the skew) and newer than `after`.
pub fn accept(totp: &Totp, code: &str, now_secs: i64, after: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let step = totp.check(&code, u64::try_from(now_secs).ok()?)?;
    (step > after).then_some(step)
}

/// Fresh recovery codes (shown once) and their hashes (stored).
///
/// # Errors
/// If the system's random source fails.
pub fn recovery_codes() -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        // 12 characters of the URL-safe alphabet, grouped for reading: ~72 bits each.
        let raw: String = random_secret()?.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
        codes.push(format!("{}-{}-{}", &raw[..4], &raw[4..8], &raw[8..12]).to_lowercase());
    }
    let hashes = codes.iter().map(|c| hash_secret(c)).collect();
    Ok((codes, hashes))
}

/// The hash a recovery code is stored under (case and dashes do not matter).
pub fn recovery_hash(code: &str) -> String {
    let clean: String = code.trim().to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect();
    if clean.len() != 12 {
        return String::new();
    }
    hash_secret(&format!("{}-{}-{}", &clean[..4], &clean[4..8], &clean[8..12]))
}

/// The otpauth URI as a QR code, in SVG.
///
/// # Errors
/// If the URI is too long for a QR code.
pub fn qr_svg(uri: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes())?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_accepted_once_and_only_in_their_window() {
        let secret = new_secret().unwrap();
        let t = totp(&secret, "Acme", "ada@example.com").unwrap();
        let now = 1_800_000_000;
        let code = t.generate(u64::try_from(now).unwrap()).to_string();
        let step = accept(&t, &code, now, 0).expect("a fresh code");
        assert_eq!(accept(&t, &code, now, step), None, "replay refused");
        assert!(accept(&t, &code, now + 30, 0).is_some(), "one step of skew");
        assert_eq!(accept(&t, &code, now + 120, 0), None, "too late");
        assert_eq!(accept(&t, "12345", now, 0), None);
        assert_eq!(accept(&t, "abcdef", now, 0), None);
        assert!(t.to_url().unwrap().starts_with("otpauth://totp/Acme:ada%40example.com?secret="));
    }

    #[test]
    fn recovery_codes_hash_regardless_of_formatting() {
        let (codes, hashes) = recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(recovery_hash(&codes[0].to_uppercase().replace('-', " ")), hashes[0]);
        assert_eq!(recovery_hash("short"), "");
        assert!(qr_svg("otpauth://totp/x?secret=ABC").unwrap().starts_with("<?xml"));
    }
}

// Routes.

/// This group's routes.
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(totp_enroll)).routes(routes!(totp_confirm)).routes(routes!(totp_disable))
}

/// A TOTP enrolment: add the secret to an authenticator app, then confirm with a code.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The secret, base32, for typing in by hand.
    pub secret: String,
    /// The `otpauth://` URI authenticator apps read.
    pub otpauth_uri: String,
    /// The URI as a QR code, SVG.
    pub qr_svg: String,
}

/// Starts TOTP enrolment (or restarts it, if it was never confirmed).
#[utoipa::path(post, path = "/auth/mfa/totp/enroll", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Enrolment), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn totp_enroll(State(s): State<Services>, caller: AuthUser) -> Result<Json<Enrolment>, ApiError> {
    let store = s.store.as_ref();
    let (mut user, version) = users::load_versioned(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    if user.mfa.is_some() {
        return Err(ApiError::Conflict {
            code: "mfa_already_enabled",
            detail: "disable two-factor authentication first".into(),
        });
    }
    let secret = new_secret()?;
    let totp = totp(&secret, &s.config.server.app_name, user.email.as_str())?;
    let uri = totp.to_url().map_err(|e| anyhow::anyhow!("otpauth URI: {e:?}"))?;
    let qr_svg = qr_svg(&uri)?;
    user.mfa_pending = Some(secret.clone());
    users::save(store, &user, version).await?;
    Ok(Json(Enrolment { secret, otpauth_uri: uri, qr_svg }))
}

/// A TOTP code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The 6-digit code from the authenticator app.
    #[schema(value_type = String)]
    pub code: Secret<String>,
}

/// Recovery codes, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    /// Each works once, in place of a TOTP code. Store them somewhere safe.
    pub recovery_codes: Vec<String>,
}

/// Confirms TOTP enrolment with a first code; returns the recovery codes.
#[utoipa::path(post, path = "/auth/mfa/totp/confirm", tag = "auth", request_body = CodeRequest, security(("bearer" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn totp_confirm(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<CodeRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let store = s.store.as_ref();
    let (mut user, version) = users::load_versioned(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    let Some(secret) = user.mfa_pending.clone() else {
        return Err(ApiError::Conflict { code: "no_enrolment", detail: "start with /auth/mfa/totp/enroll".into() });
    };
    let totp = totp(&secret, &s.config.server.app_name, user.email.as_str())?;
    let Some(step) = accept(&totp, req.code.expose(), s.clock.now_secs(), 0) else {
        return Err(ApiError::Invalid {
            code: "invalid_code",
            detail: "the code does not match; check the device's clock".into(),
        });
    };
    let (codes, hashes) = recovery_codes()?;
    user.mfa = Some(Mfa { secret, enabled_at_ms: s.clock.now_ms(), last_step: step, recovery_hashes: hashes });
    user.mfa_pending = None;
    users::save(store, &user, version).await?;
    sessions::record(&s, user.id, AuditAction::MfaEnabled, None, &ctx, json!({"method": "totp"})).await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Re-authentication to disable two-factor authentication.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    /// The password.
    #[schema(value_type = String, format = Password)]
    pub password: Secret<String>,
    /// A current TOTP code (or a recovery code).
    #[schema(value_type = String)]
    pub code: Secret<String>,
}

/// Disables TOTP, after re-authentication with the password and a code.
#[utoipa::path(delete, path = "/auth/mfa/totp", tag = "auth", request_body = DisableRequest, security(("bearer" = [])),
    responses((status = 204), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Two-factor sign-in is not on", body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn totp_disable(
    State(s): State<Services>,
    ctx: RequestContext,
    caller: AuthUser,
    Json(req): Json<DisableRequest>,
) -> Result<StatusCode, ApiError> {
    let store = s.store.as_ref();
    let now = s.clock.now_ms();
    let subject = caller.user_id.to_string();
    // Counted before the password and code are tried (see `login`); a success takes it back.
    let attempt = rate_limit::claim(store, MFA_PER_USER, &subject, now).await?;
    let (mut user, version) = users::load_versioned(store, caller.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    let Some(factor) = user.mfa.clone() else {
        return Err(ApiError::Conflict {
            code: "mfa_not_enabled",
            detail: "two-factor authentication is not enabled".into(),
        });
    };
    let totp = totp(&factor.secret, &s.config.server.app_name, user.email.as_str())?;
    let code_ok = accept(&totp, req.code.expose(), s.clock.now_secs(), factor.last_step).is_some()
        || factor.recovery_hashes.contains(&recovery_hash(req.code.expose()));
    let password_ok = match s.passwords.verify(&req.password, &user.password_hash).await {
        Ok(ok) => ok,
        Err(e) => {
            attempt.release(store).await?;
            return Err(e);
        }
    };
    if !(password_ok && code_ok) {
        sessions::record(&s, user.id, AuditAction::MfaDisableFailed, None, &ctx, json!({})).await?;
        return Err(ApiError::Forbidden);
    }
    attempt.release(store).await?;
    user.mfa = None;
    users::save(store, &user, version).await?;
    sessions::record(&s, user.id, AuditAction::MfaDisabled, None, &ctx, json!({"method": "totp"})).await?;
    Ok(StatusCode::NO_CONTENT)
}
