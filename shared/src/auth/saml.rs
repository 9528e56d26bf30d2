//! SAML 2.0 Web Browser SSO, the service provider's side ([SAMLProf] section 4.1): the
//! identity provider's metadata, the `AuthnRequest` sent by the HTTP-Redirect binding, our
//! own metadata, and the verification of the `Response` posted back by the HTTP-POST binding.
//!
//! XML Signature verification and canonicalization are `xml-sec`'s (pure Rust, so the
//! functions still build for `provided.al2023` on arm64 without libxml2 or xmlsec1). What
//! decides whether a signed response may be believed is here, because that is where SAML
//! implementations fail (signature wrapping, [Somorovsky 2012]; comment truncation,
//! CVE-2017-11427):
//! - the document has no DTD, exactly one `Assertion`, a direct child of the `Response`, and
//!   no `EncryptedAssertion`;
//! - a `Signature` may only be a direct child of the `Response` or of the `Assertion`, its
//!   single `Reference` naming its parent's `ID`, which no other element carries;
//! - every signature must verify with one of the organization's configured certificates
//!   (an embedded `KeyInfo` is never trusted), and the verifier must prove that the very
//!   `Assertion` element read afterwards lies inside what was signed;
//! - text is read only from elements whose children are all text, so a comment cannot cut
//!   a `NameID` short.
//!
//! [SAMLProf]: https://docs.oasis-open.org/security/saml/v2.0/saml-profiles-2.0-os.pdf
//! [Somorovsky 2012]: https://www.usenix.org/conference/usenixsecurity12/technical-sessions/presentation/somorovsky

use std::collections::BTreeMap;
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use xml_sec::XmlDocument;

pub use crate::tenancy::saml_connection::IdpMetadata;
use xml_sec::xmldsig::{
    CallerTrustedSignatureKey, DsigError, SignatureAlgorithm, SignatureVerificationError, VerificationRequest,
    VerifyContext, VerifyingKey,
};

/// The SAML 2.0 protocol namespace.
pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// The SAML 2.0 assertion namespace.
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// The SAML 2.0 metadata namespace.
pub const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// The XML Signature namespace.
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The HTTP-Redirect binding ([SAMLBind] section 3.4).
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// The HTTP-POST binding ([SAMLBind] section 3.5).
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
/// The `emailAddress` name identifier format ([SAMLCore] section 8.3.2).
pub const NAME_ID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
/// Digest algorithms accepted in a signature's reference ([XMLDSig11] section 6.2; SHA-1 is
/// refused).
const STRONG_DIGESTS: [&str; 3] = [
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];

/// The largest `SAMLResponse` form value accepted, base64 included (bytes).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// The largest metadata document accepted (bytes).
pub const MAX_METADATA_BYTES: usize = 512 * 1024;
/// How far the IdP's clock may be from ours when checking validity windows (ms).
pub const CLOCK_SKEW_MS: i64 = 120_000;
/// The most signing certificates an organization may configure (a rollover needs two).
pub const MAX_CERTIFICATES: usize = 5;

/// The transforms a signature may use: enveloped signature and the canonicalizations,
/// never XPath, XSLT or Base64, which can make the signed bytes differ from the element.
const ALLOWED_TRANSFORMS: [&str; 5] = [
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/2006/12/xml-c14n11",
];

/// Why a SAML message or metadata document was refused: `code` is the problem code,
/// `detail` says what to fix and never echoes attacker-chosen bytes at length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct SamlError {
    /// A stable code: `saml_malformed`, `saml_dtd_refused`, `saml_encrypted_assertion`,
    /// `saml_unsigned`, `saml_signature_invalid`, `saml_wrapping`, `saml_status`,
    /// `saml_issuer`, `saml_audience`, `saml_recipient`, `saml_destination`, `saml_expired`,
    /// `saml_not_yet_valid`, `saml_subject`, `invalid_metadata`, `invalid_certificate`.
    pub code: &'static str,
    /// What went wrong, for the log and the problem's detail.
    pub detail: String,
}

fn refuse(code: &'static str, detail: impl Into<String>) -> SamlError {
    SamlError { code, detail: detail.into() }
}

/// Our side: what the IdP is told to send, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProvider {
    /// Our `entityID` (the URL of our metadata).
    pub entity_id: String,
    /// The assertion consumer service (HTTP-POST binding).
    pub acs_url: String,
}

/// Checks a certificate given as PEM or bare base64 DER and returns it as base64 DER.
///
/// # Errors
/// `invalid_certificate` when it is not one X.509 certificate.
pub fn normalize_certificate(text: &str) -> Result<String, SamlError> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| refuse("invalid_certificate", "a certificate is PEM or base64 DER"))?;
    let cert = CertificateDer::from(der.as_slice());
    webpki::EndEntityCert::try_from(&cert)
        .map_err(|e| refuse("invalid_certificate", format!("not a usable X.509 certificate: {e:?}")))?;
    Ok(STANDARD.encode(&der))
}

/// The most attributes (namespace declarations included) one element may carry. Checking
/// attributes for duplicates costs the parser the square of their count, so one element with
/// 20,000 attributes in an unauthenticated post would hold a core for seconds; SAML elements
/// carry fewer than 20.
const MAX_ATTRIBUTES_PER_ELEMENT: usize = 64;

/// Whether a start tag carries more than [`MAX_ATTRIBUTES_PER_ELEMENT`] attributes: one
/// linear pass over the text before the parser sees it, counting `=` outside quoted values.
fn too_many_attributes(xml: &str) -> bool {
    let bytes = xml.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'<' && !matches!(bytes.get(i + 1), Some(b'!' | b'?' | b'/')) {
            let (mut count, mut quote) = (0, None);
            i += 1;
            while i < bytes.len() {
                let b = bytes[i];
                match quote {
                    Some(q) if b == q => quote = None,
                    Some(_) => {}
                    None if b == b'"' || b == b'\'' => quote = Some(b),
                    None if b == b'=' => {
                        count += 1;
                        if count > MAX_ATTRIBUTES_PER_ELEMENT {
                            return true;
                        }
                    }
                    None if b == b'>' || b == b'<' => break,
                    None => {}
                }
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    false
}

fn has_dtd(xml: &str) -> bool {
    xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY")
}

fn parse(xml: String, what: &str) -> Result<XmlDocument, SamlError> {
    // Entra ID's and ADFS's metadata start with a UTF-8 byte order mark, which XML allows
    // (XML 1.0 section 4.3.3) and the parser does not.
    let xml = match xml.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => xml,
    };
    if has_dtd(&xml) {
        // XML external entities and entity expansion both need a DTD; SAML never does.
        return Err(refuse("saml_dtd_refused", format!("the {what} carries a DTD, which SAML never needs")));
    }
    if too_many_attributes(&xml) {
        return Err(refuse(
            "saml_malformed",
            format!("an element of the {what} has more than {MAX_ATTRIBUTES_PER_ELEMENT} attributes"),
        ));
    }
    XmlDocument::parse(xml).map_err(|e| refuse("saml_malformed", format!("the {what} is not well-formed XML: {e}")))
}

type Node<'a> = xml_sec::Node<'a, 'a>;

fn is(node: Node<'_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(ns) && node.tag_name().name() == name
}

fn children<'a>(node: Node<'a>, ns: &'a str, name: &'a str) -> impl Iterator<Item = Node<'a>> + 'a {
    node.children().filter(move |c| is(*c, ns, name))
}

fn child<'a>(node: Node<'a>, ns: &'a str, name: &'a str) -> Option<Node<'a>> {
    children(node, ns, name).next()
}

/// The text of an element whose children are all text: a comment or an element inside would
/// let canonicalization and this reading disagree about the value.
fn text(node: Node<'_>, what: &str) -> Result<String, SamlError> {
    let mut out = String::new();
    for c in node.children() {
        if !c.is_text() {
            return Err(refuse("saml_malformed", format!("{what} holds something other than text")));
        }
        out.push_str(c.text().unwrap_or_default());
    }
    Ok(out.trim().to_owned())
}

/// Reads an identity provider's metadata: an `EntityDescriptor` (or an `EntitiesDescriptor`
/// holding exactly one with an `IDPSSODescriptor`), its HTTP-Redirect single sign-on
/// service and its signing certificates ([SAMLMeta] section 2.4.3). The metadata's own
/// signature is not checked: it is trusted as the organization's admin supplied it (uploaded,
/// or fetched over https from the URL they gave).
///
/// # Errors
/// `invalid_metadata` for anything missing or malformed; `saml_dtd_refused`.
pub fn parse_idp_metadata(xml: &str) -> Result<IdpMetadata, SamlError> {
    if xml.len() > MAX_METADATA_BYTES {
        return Err(refuse("invalid_metadata", format!("metadata is at most {MAX_METADATA_BYTES} bytes")));
    }
    let doc = parse(xml.to_owned(), "metadata").map_err(|e| match e.code {
        "saml_malformed" => refuse("invalid_metadata", e.detail),
        _ => e,
    })?;
    doc.with_view(|view| {
        let root = view.document().root_element();
        let bad = |d: &str| refuse("invalid_metadata", d.to_owned());
        let descriptors: Vec<Node<'_>> = root
            .descendants()
            .filter(|n| is(*n, NS_METADATA, "EntityDescriptor") && child(*n, NS_METADATA, "IDPSSODescriptor").is_some())
            .collect();
        let [entity] = descriptors.as_slice() else {
            return Err(bad("the metadata must describe exactly one identity provider (an IDPSSODescriptor)"));
        };
        let entity_id = entity.attribute("entityID").unwrap_or_default().trim().to_owned();
        if entity_id.is_empty() || entity_id.len() > 1024 {
            return Err(bad("the EntityDescriptor has no entityID"));
        }
        let idp = child(*entity, NS_METADATA, "IDPSSODescriptor").ok_or_else(|| bad("no IDPSSODescriptor"))?;
        let sso_url = children(idp, NS_METADATA, "SingleSignOnService")
            .find(|s| s.attribute("Binding") == Some(BINDING_REDIRECT))
            .and_then(|s| s.attribute("Location"))
            .map(str::trim)
            .ok_or_else(|| bad("the IdP has no SingleSignOnService for the HTTP-Redirect binding"))?;
        let parsed = url::Url::parse(sso_url).map_err(|_| bad("the SingleSignOnService Location is not a URL"))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(bad("the SingleSignOnService Location is not an http(s) URL"));
        }
        let mut certificates = Vec::new();
        for key in children(idp, NS_METADATA, "KeyDescriptor") {
            if key.attribute("use").is_some_and(|u| u != "signing") {
                continue;
            }
            for cert in key.descendants().filter(|n| is(*n, NS_DSIG, "X509Certificate")) {
                let normalized = normalize_certificate(&text(cert, "X509Certificate")?)?;
                if !certificates.contains(&normalized) {
                    certificates.push(normalized);
                }
            }
        }
        if certificates.is_empty() {
            return Err(bad("the IdP publishes no signing certificate (KeyDescriptor use=\"signing\")"));
        }
        if certificates.len() > MAX_CERTIFICATES {
            return Err(bad("the IdP publishes more than 5 signing certificates"));
        }
        Ok(IdpMetadata { entity_id, sso_url: sso_url.to_owned(), certificates })
    })
}

fn escape(value: &str) -> String {
    value.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Our metadata ([SAMLMeta] section 2.4.4): entity id, the HTTP-POST assertion consumer
/// service, and the `emailAddress` name id format. We sign no requests, so no key is listed.
#[must_use]
pub fn sp_metadata(sp: &ServiceProvider, want_assertions_signed: bool) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<md:EntityDescriptor xmlns:md="{md}" entityID="{entity}">"#,
            r#"<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="{want}" protocolSupportEnumeration="{proto}">"#,
            r#"<md:NameIDFormat>{email}</md:NameIDFormat>"#,
            r#"<md:AssertionConsumerService Binding="{post}" Location="{acs}" index="0" isDefault="true"/>"#,
            r#"</md:SPSSODescriptor></md:EntityDescriptor>"#,
        ),
        md = NS_METADATA,
        entity = escape(&sp.entity_id),
        want = want_assertions_signed,
        proto = NS_PROTOCOL,
        email = NAME_ID_EMAIL,
        post = BINDING_POST,
        acs = escape(&sp.acs_url),
    )
}

/// The URL that sends the browser to the IdP with an `AuthnRequest` by the HTTP-Redirect
/// binding ([SAMLBind] section 3.4.4.1: raw DEFLATE, base64, then URL-encoded), unsigned.
/// `request_id` must be an XML name (start with `_` or a letter); `issue_instant` is
/// RFC 3339 in UTC.
///
/// # Errors
/// When the IdP's URL does not parse.
pub fn authn_request_url(
    sp: &ServiceProvider,
    sso_url: &str,
    request_id: &str,
    issue_instant: &str,
    relay_state: Option<&str>,
) -> Result<String, SamlError> {
    let xml = format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="{p}" xmlns:saml="{a}" ID="{id}" Version="2.0" IssueInstant="{at}" "#,
            r#"Destination="{dest}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="{post}">"#,
            r#"<saml:Issuer>{issuer}</saml:Issuer>"#,
            r#"<samlp:NameIDPolicy Format="{email}" AllowCreate="true"/>"#,
            r#"</samlp:AuthnRequest>"#,
        ),
        p = NS_PROTOCOL,
        a = NS_ASSERTION,
        id = escape(request_id),
        at = escape(issue_instant),
        dest = escape(sso_url),
        acs = escape(&sp.acs_url),
        post = BINDING_POST,
        issuer = escape(&sp.entity_id),
        email = NAME_ID_EMAIL,
    );
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(xml.as_bytes())
        .and_then(|()| encoder.flush())
        .map_err(|e| refuse("saml_malformed", e.to_string()))?;
    let deflated = encoder.finish().map_err(|e| refuse("saml_malformed", e.to_string()))?;
    let mut url = url::Url::parse(sso_url)
        .map_err(|_| refuse("invalid_metadata", "the IdP's single sign-on URL is not a URL"))?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("SAMLRequest", &STANDARD.encode(deflated));
        if let Some(relay) = relay_state {
            query.append_pair("RelayState", relay);
        }
    }
    Ok(url.into())
}

/// What a response must match.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The organization's identity provider.
    pub idp: &'a IdpMetadata,
    /// Us.
    pub sp: &'a ServiceProvider,
    /// Now (Unix ms).
    pub now_ms: i64,
    /// Refuse responses whose assertion is not signed itself (a signed `Response` around it
    /// is otherwise enough).
    pub require_signed_assertion: bool,
}

/// A verified assertion's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The assertion's `ID` (for replay detection).
    pub id: String,
    /// The request it answers (`InResponseTo`), absent for IdP-initiated logins.
    pub in_response_to: Option<String>,
    /// The subject's `NameID`.
    pub name_id: String,
    /// Its `Format`, when given.
    pub name_id_format: Option<String>,
    /// Attribute name to its values.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// When the assertion stops being usable (Unix ms): replays must be refused until then.
    pub not_on_or_after_ms: i64,
    /// The IdP's session index, when given.
    pub session_index: Option<String>,
}

impl VerifiedAssertion {
    /// The subject's email address: the `NameID` in `emailAddress` format, else the first
    /// attribute of the common names for it (Okta `email`, Entra ID's claim URI, ADFS's).
    #[must_use]
    pub fn email(&self) -> Option<&str> {
        if self.name_id_format.as_deref() == Some(NAME_ID_EMAIL) {
            return Some(&self.name_id);
        }
        const NAMES: [&str; 5] = [
            "email",
            "mail",
            "emailaddress",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            "urn:oid:0.9.2342.19200300.100.1.3",
        ];
        NAMES.iter().find_map(|n| self.attributes.get(*n).and_then(|v| v.first())).map(String::as_str)
    }

    /// The subject as a linked identity's key: the `NameID`, in the address's one form when
    /// it is an email address (IdPs compare those without case, and Entra ID sends a user
    /// principal name as its directory holds it, so `Dave@Acme.com` and `dave@acme.com` are
    /// one person).
    #[must_use]
    pub fn subject(&self) -> String {
        if self.name_id_format.as_deref() == Some(NAME_ID_EMAIL) {
            // The address's one form (ASCII domain, NFC, lower case), as users are keyed.
            crate::mail::EmailAddress::parse(&self.name_id)
                .map_or_else(|_| self.name_id.to_lowercase(), |a| a.as_str().to_owned())
        } else {
            self.name_id.clone()
        }
    }

    /// The subject's display name from the usual given and family name attributes.
    #[must_use]
    pub fn display_name(&self) -> Option<String> {
        let first = |names: &[&str]| names.iter().find_map(|n| self.attributes.get(*n).and_then(|v| v.first()));
        let given =
            first(&["firstName", "givenName", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"]);
        let family = first(&["lastName", "surname", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"]);
        match (given, family) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (Some(one), None) | (None, Some(one)) => Some(one.clone()),
            (None, None) => None,
        }
    }
}

/// The configured certificates as one key: a signature verifies when any of them verifies it.
struct ConfiguredCertificates {
    der: Vec<Vec<u8>>,
}

impl VerifyingKey for ConfiguredCertificates {
    fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        signed_data: &[u8],
        signature_value: &[u8],
    ) -> Result<bool, DsigError> {
        // RSA PKCS#1 v1.5 with SHA-2 is what Okta, Entra ID, ADFS and Google Workspace sign
        // with; SHA-1 and the rest are refused rather than trusted.
        let verifier: &dyn rustls_pki_types::SignatureVerificationAlgorithm = match algorithm {
            SignatureAlgorithm::RsaSha256 => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
            SignatureAlgorithm::RsaSha384 => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
            SignatureAlgorithm::RsaSha512 => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
            other => {
                return Err(SignatureVerificationError::UnsupportedAlgorithm { uri: other.uri().to_owned() }.into());
            }
        };
        Ok(self.der.iter().any(|der| {
            let cert = CertificateDer::from(der.as_slice());
            webpki::EndEntityCert::try_from(&cert)
                .is_ok_and(|c| c.verify_signature(verifier, signed_data, signature_value).is_ok())
        }))
    }
}

fn instant_ms(value: Option<&str>, what: &str) -> Result<Option<i64>, SamlError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v.trim())
                .map(|t| t.timestamp_millis())
                .map_err(|_| refuse("saml_malformed", format!("{what} is not an xs:dateTime")))
        })
        .transpose()
}

/// What the structural checks found, read from the same parsed tree the signature
/// verification then works on.
struct Shape {
    assertion_id: String,
    response_signed: bool,
    assertion_signed: bool,
}

/// The checks that make signature wrapping impossible to express (see the module docs).
fn shape(view: xml_sec::document::DocumentView<'_>) -> Result<Shape, SamlError> {
    let wrap = |d: &str| refuse("saml_wrapping", d.to_owned());
    let root = view.document().root_element();
    if !is(root, NS_PROTOCOL, "Response") {
        return Err(refuse("saml_malformed", "the message is not a SAML Response"));
    }
    if root.descendants().any(|n| is(n, NS_ASSERTION, "EncryptedAssertion")) {
        return Err(refuse(
            "saml_encrypted_assertion",
            "encrypted assertions are not accepted: turn assertion encryption off at the IdP (the response travels over TLS)",
        ));
    }
    let assertions: Vec<Node<'_>> = root.descendants().filter(|n| is(*n, NS_ASSERTION, "Assertion")).collect();
    let [assertion] = assertions.as_slice() else {
        return Err(wrap("the response must carry exactly one assertion"));
    };
    if assertion.parent_element().map(|p| p.id()) != Some(root.id()) {
        return Err(wrap("the assertion must be a direct child of the response"));
    }
    let assertion_id = assertion.attribute("ID").unwrap_or_default().to_owned();
    if assertion_id.is_empty() {
        return Err(refuse("saml_malformed", "the assertion has no ID"));
    }
    let (mut response_signed, mut assertion_signed) = (false, false);
    for signature in root.descendants().filter(|n| is(*n, NS_DSIG, "Signature")) {
        let parent = signature.parent_element().ok_or_else(|| wrap("a signature has no parent"))?;
        let slot = if parent.id() == root.id() {
            &mut response_signed
        } else if parent.id() == assertion.id() {
            &mut assertion_signed
        } else {
            return Err(wrap("a signature may only sign the response or the assertion it sits in"));
        };
        if std::mem::replace(slot, true) {
            return Err(wrap("an element carries two signatures"));
        }
        let references: Vec<Node<'_>> = child(signature, NS_DSIG, "SignedInfo")
            .map(|info| children(info, NS_DSIG, "Reference").collect())
            .unwrap_or_default();
        let [reference] = references.as_slice() else {
            return Err(wrap("a signature must hold exactly one reference"));
        };
        let parent_id = parent.attribute("ID").unwrap_or_default();
        if parent_id.is_empty() || reference.attribute("URI") != Some(&format!("#{parent_id}")) {
            return Err(wrap("a signature must reference the element it sits in"));
        }
        // The signature algorithm is checked where the key verifies; the digest is checked
        // here, since a SHA-1 digest under an RSA-SHA256 signature is as weak as SHA-1.
        let digest = child(*reference, NS_DSIG, "DigestMethod").and_then(|d| d.attribute("Algorithm"));
        if !digest.is_some_and(|d| STRONG_DIGESTS.contains(&d)) {
            return Err(refuse(
                "saml_signature_invalid",
                "the signature's digest must be SHA-256, SHA-384 or SHA-512 (set the IdP to SHA-256)",
            ));
        }
    }
    if !response_signed && !assertion_signed {
        return Err(refuse("saml_unsigned", "neither the response nor the assertion is signed"));
    }
    // Both IDs must name one element each, so the references cannot be steered elsewhere.
    for id in [root.attribute("ID").unwrap_or_default(), assertion_id.as_str()] {
        if !id.is_empty() && view.node_for_id(id, &[]).is_none() {
            return Err(wrap("an ID is carried by more than one element"));
        }
    }
    Ok(Shape { assertion_id, response_signed, assertion_signed })
}

/// Verifies a `SAMLResponse` form value (base64) from the HTTP-POST binding and returns
/// its assertion ([SAMLProf] section 4.1.4.3 and [SAMLCore] sections 2.5 and 2.7): the
/// signature checks above, then status `Success`, issuer, `Destination`, the bearer
/// subject confirmation's `Recipient` and `NotOnOrAfter`, the conditions' window (with
/// [`CLOCK_SKEW_MS`]) and our audience. `InResponseTo` is returned, not checked: the caller
/// holds the requests it sent.
///
/// # Errors
/// A [`SamlError`] naming the first check that failed.
pub fn verify_response(encoded: &str, e: &Expectations<'_>) -> Result<VerifiedAssertion, SamlError> {
    if encoded.len() > MAX_RESPONSE_BYTES {
        return Err(refuse("saml_malformed", format!("the response is larger than {MAX_RESPONSE_BYTES} bytes")));
    }
    let compact: String = encoded.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = STANDARD.decode(compact).map_err(|_| refuse("saml_malformed", "SAMLResponse is not base64"))?;
    let xml = String::from_utf8(bytes).map_err(|_| refuse("saml_malformed", "the response is not UTF-8"))?;
    let doc = parse(xml, "response")?;
    let shape = doc.with_view(shape)?;
    if e.require_signed_assertion && !shape.assertion_signed {
        return Err(refuse("saml_unsigned", "this organization requires the assertion itself to be signed"));
    }

    let certificates = e
        .idp
        .certificates
        .iter()
        .map(|c| STANDARD.decode(c).map_err(|_| refuse("invalid_certificate", "a stored certificate is not base64")))
        .collect::<Result<Vec<_>, _>>()?;
    let key = ConfiguredCertificates { der: certificates };
    let context = VerifyContext::new().allowed_transforms(ALLOWED_TRANSFORMS).process_manifests(false);
    let invalid = |d: String| refuse("saml_signature_invalid", d);
    let signatures = context.signature_identities(&doc).map_err(|err| invalid(err.to_string()))?;
    if signatures.len() != usize::from(shape.response_signed) + usize::from(shape.assertion_signed) {
        return Err(refuse("saml_wrapping", "the signatures found do not match the document's shape"));
    }
    let trusted: Vec<CallerTrustedSignatureKey<'_>> =
        signatures.iter().map(|s| CallerTrustedSignatureKey { signature: *s, key: &key }).collect();
    let target = doc
        .with_view(|view| view.node_for_id(&shape.assertion_id, &[]))
        .ok_or_else(|| refuse("saml_wrapping", "the assertion's ID is ambiguous"))?;
    let targets = [target];
    let request = VerificationRequest { expected_targets: &targets, trusted_keys: &trusted, ..Default::default() };
    let evidence = context.verify_request(&doc, &request).map_err(|err| invalid(err.to_string()))?;
    let covered = evidence.accepted(&doc).map_err(|err| invalid(err.to_string()))?
        && evidence.covers_element(&doc, target).map_err(|err| invalid(err.to_string()))?;
    if !covered {
        let why = evidence
            .signatures()
            .iter()
            .filter_map(|s| match s.result() {
                Err(err) => Some(err.to_string()),
                Ok(r) if r.status != xml_sec::xmldsig::DsigStatus::Valid => Some(format!("{:?}", r.status)),
                Ok(_) => None,
            })
            .next()
            .unwrap_or_else(|| "no signature covers the assertion".into());
        return Err(invalid(format!("the signature does not verify with the configured certificates ({why})")));
    }
    doc.with_view(|view| read_assertion(view.document().root_element(), &shape, e))
}

/// Reads and checks the (verified) assertion's content.
fn read_assertion(root: Node<'_>, shape: &Shape, e: &Expectations<'_>) -> Result<VerifiedAssertion, SamlError> {
    let assertion_id = shape.assertion_id.as_str();
    let malformed = |d: &str| refuse("saml_malformed", d.to_owned());
    if root.attribute("Version") != Some("2.0") {
        return Err(malformed("the response is not SAML 2.0"));
    }
    if let Some(destination) = root.attribute("Destination")
        && destination != e.sp.acs_url
    {
        return Err(refuse("saml_destination", "the response was sent to another assertion consumer service"));
    }
    let status = child(root, NS_PROTOCOL, "Status")
        .and_then(|s| child(s, NS_PROTOCOL, "StatusCode"))
        .and_then(|c| c.attribute("Value"))
        .ok_or_else(|| malformed("the response has no status"))?;
    if status != STATUS_SUCCESS {
        let short = status.rsplit(':').next().unwrap_or(status).chars().take(64).collect::<String>();
        return Err(refuse("saml_status", format!("the IdP did not sign the user in ({short})")));
    }
    if let Some(issuer) = child(root, NS_ASSERTION, "Issuer")
        && text(issuer, "Issuer")? != e.idp.entity_id
    {
        return Err(refuse("saml_issuer", "the response comes from another identity provider"));
    }
    let assertion = child(root, NS_ASSERTION, "Assertion").filter(|a| a.attribute("ID") == Some(assertion_id));
    let assertion = assertion.ok_or_else(|| malformed("the assertion moved"))?;
    let issuer = child(assertion, NS_ASSERTION, "Issuer").ok_or_else(|| malformed("the assertion has no issuer"))?;
    if text(issuer, "Issuer")? != e.idp.entity_id {
        return Err(refuse("saml_issuer", "the assertion comes from another identity provider"));
    }
    let now = e.now_ms;

    let subject = child(assertion, NS_ASSERTION, "Subject").ok_or_else(|| malformed("the assertion has no subject"))?;
    let name =
        child(subject, NS_ASSERTION, "NameID").ok_or_else(|| refuse("saml_subject", "the subject has no NameID"))?;
    let name_id = text(name, "NameID")?;
    if name_id.is_empty() || name_id.len() > 512 {
        return Err(refuse("saml_subject", "the NameID is empty or too long"));
    }
    let response_in_response_to = root.attribute("InResponseTo").map(str::to_owned);
    // Only signed content may say which request this answers: when only the assertion is
    // signed, the response's own InResponseTo is anyone's to add, and would turn an
    // unsolicited response into an answer to a request the attacker started.
    let signed_response_in_response_to = response_in_response_to.clone().filter(|_| shape.response_signed);
    let mut confirmed = None;
    for confirmation in children(subject, NS_ASSERTION, "SubjectConfirmation") {
        if confirmation.attribute("Method") != Some(BEARER) {
            continue;
        }
        let Some(data) = child(confirmation, NS_ASSERTION, "SubjectConfirmationData") else { continue };
        if data.attribute("Recipient") != Some(e.sp.acs_url.as_str()) {
            continue;
        }
        let Some(until) = instant_ms(data.attribute("NotOnOrAfter"), "NotOnOrAfter")? else {
            return Err(refuse("saml_subject", "the bearer subject confirmation has no NotOnOrAfter"));
        };
        if now - CLOCK_SKEW_MS >= until {
            return Err(refuse("saml_expired", "the assertion's subject confirmation has expired"));
        }
        let in_response_to = data.attribute("InResponseTo").map(str::to_owned);
        if response_in_response_to.is_some() && in_response_to.is_some() && response_in_response_to != in_response_to {
            return Err(refuse("saml_wrapping", "the response and its assertion answer different requests"));
        }
        confirmed = Some((until, in_response_to.or_else(|| signed_response_in_response_to.clone())));
        break;
    }
    let (confirmation_until, in_response_to) = confirmed.ok_or_else(|| {
        refuse("saml_recipient", "no bearer subject confirmation names this assertion consumer service as recipient")
    })?;

    let conditions =
        child(assertion, NS_ASSERTION, "Conditions").ok_or_else(|| malformed("the assertion has no conditions"))?;
    if let Some(from) = instant_ms(conditions.attribute("NotBefore"), "NotBefore")?
        && now + CLOCK_SKEW_MS < from
    {
        return Err(refuse("saml_not_yet_valid", "the assertion is not valid yet (check the IdP's clock)"));
    }
    let mut not_on_or_after = confirmation_until;
    if let Some(until) = instant_ms(conditions.attribute("NotOnOrAfter"), "NotOnOrAfter")? {
        if now - CLOCK_SKEW_MS >= until {
            return Err(refuse("saml_expired", "the assertion has expired"));
        }
        not_on_or_after = not_on_or_after.max(until);
    }
    let restrictions: Vec<Node<'_>> = children(conditions, NS_ASSERTION, "AudienceRestriction").collect();
    if restrictions.is_empty() {
        return Err(refuse("saml_audience", "the assertion names no audience"));
    }
    // Each restriction must hold ([SAMLCore] section 2.5.1.4).
    for restriction in restrictions {
        let mut ours = false;
        for audience in children(restriction, NS_ASSERTION, "Audience") {
            ours |= text(audience, "Audience")? == e.sp.entity_id;
        }
        if !ours {
            return Err(refuse("saml_audience", "the assertion is meant for another service provider"));
        }
    }

    let session_index =
        child(assertion, NS_ASSERTION, "AuthnStatement").and_then(|s| s.attribute("SessionIndex")).map(str::to_owned);
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for statement in children(assertion, NS_ASSERTION, "AttributeStatement") {
        for attribute in children(statement, NS_ASSERTION, "Attribute") {
            let Some(attribute_name) = attribute.attribute("Name") else { continue };
            let values = attributes.entry(attribute_name.to_owned()).or_default();
            for value in children(attribute, NS_ASSERTION, "AttributeValue") {
                // A structured value (Shibboleth's eduPersonTargetedID is a NameID) is not
                // one Groundwork reads: skip it rather than refuse the login. Text with a
                // comment in it is still refused (text() below).
                if value.children().any(|c| c.is_element()) {
                    continue;
                }
                values.push(text(value, "AttributeValue")?);
            }
        }
    }
    Ok(VerifiedAssertion {
        id: assertion_id.to_owned(),
        in_response_to,
        name_id,
        name_id_format: name.attribute("Format").map(str::to_owned),
        attributes,
        not_on_or_after_ms: not_on_or_after,
        session_index,
    })
}
