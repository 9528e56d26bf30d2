//! Access-token signing keys: RSA 2048 (RS256, the algorithm API Gateway's JWT authorizer
//! and every JWT library accept), identified by a key id (`kid`, the RFC 7638 thumbprint).
//! The first key signs; every key verifies, so a rotation (add a new key first, keep the old
//! one until its tokens have expired) logs nobody out. The public keys are served as a JWKS.
//!
//! Where keys come from:
//! - `GROUNDWORK_JWT_KEYS`: base64 PKCS#8 DER keys, comma-separated, newest first (on AWS, set
//!   from Secrets Manager by the template); `cargo run -- jwt-key` prints a fresh one;
//! - otherwise, locally: `<data dir>/keys/jwt-*.pk8`, generated on first start.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One key that signs new tokens, and the keys that verify them.
pub struct SigningKeys {
    active_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    jwks: Value,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").field("active_kid", &self.active_kid).field("kids", &self.decoding.len()).finish()
    }
}

/// A fresh RSA 2048 private key, as PKCS#8 DER.
///
/// # Errors
/// If the system's random source fails.
pub fn generate_pkcs8() -> anyhow::Result<Vec<u8>> {
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
    let der = pair.as_der().map_err(|_| anyhow::anyhow!("encoding the RSA key failed"))?;
    Ok(der.as_ref().to_vec())
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

impl SigningKeys {
    /// Keys from PKCS#8 DER, newest (signing) first.
    ///
    /// # Errors
    /// If the list is empty or a key is not an RSA key of at least 2048 bits.
    pub fn from_pkcs8(keys: &[Vec<u8>]) -> anyhow::Result<Self> {
        anyhow::ensure!(!keys.is_empty(), "no signing key");
        let mut decoding = HashMap::new();
        let mut jwks = Vec::new();
        let mut first: Option<(String, EncodingKey)> = None;
        for der in keys {
            let pair = KeyPair::from_pkcs8(der).map_err(|e| anyhow::anyhow!("not an RSA PKCS#8 key: {e}"))?;
            anyhow::ensure!(pair.public_modulus_len() >= 256, "RSA keys must have at least 2048 bits");
            let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            let (n, e) = (URL_SAFE_NO_PAD.encode(&components.n), URL_SAFE_NO_PAD.encode(&components.e));
            // RFC 7638: the SHA-256 of the required members in lexicographic order.
            let thumbprint = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
            let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
            decoding.insert(kid.clone(), DecodingKey::from_rsa_raw_components(&components.n, &components.e));
            jwks.push(json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}));
            if first.is_none() {
                let encoding = EncodingKey::from_rsa_pem(pem(der).as_bytes()).context("loading the signing key")?;
                first = Some((kid, encoding));
            }
        }
        let (active_kid, encoding) = first.context("no signing key")?;
        Ok(Self { active_kid, encoding, decoding, jwks: json!({ "keys": jwks }) })
    }

    /// Keys from `GROUNDWORK_JWT_KEYS`' format: base64 DER, comma-separated, newest first.
    ///
    /// # Errors
    /// If a key does not decode.
    pub fn from_env_value(value: &str) -> anyhow::Result<Self> {
        let keys = value
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| STANDARD.decode(k).context("GROUNDWORK_JWT_KEYS holds a key that is not base64"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Self::from_pkcs8(&keys).context("GROUNDWORK_JWT_KEYS")
    }

    /// The keys in `dir` (`jwt-*.pk8`, newest name first), generating one if there is none.
    ///
    /// # Errors
    /// If the directory cannot be read or written.
    pub fn load_or_generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pk8"))
            .collect();
        if files.is_empty() {
            let path = dir.join(format!("jwt-{}.pk8", crate::id::RequestId::new()));
            std::fs::write(&path, generate_pkcs8()?).with_context(|| format!("writing {}", path.display()))?;
            restrict(&path);
            tracing::info!(path = %path.display(), "generated a token signing key");
            files.push(path);
        }
        files.sort();
        files.reverse();
        let keys = files.iter().map(std::fs::read).collect::<Result<Vec<_>, _>>()?;
        Self::from_pkcs8(&keys)
    }

    /// The signing key's id.
    pub fn active_kid(&self) -> &str {
        &self.active_kid
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub(crate) fn decoding(&self, kid: &str) -> Option<&DecodingKey> {
        self.decoding.get(kid)
    }

    /// The public keys as a JSON Web Key Set.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }
}

#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict(_: &Path) {}
