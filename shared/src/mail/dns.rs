//! The DNS records a sending domain needs for deliverability with SES, each with the reason
//! it exists: DKIM (SES Easy DKIM's three CNAMEs), a custom MAIL FROM subdomain with its MX
//! and SPF records (so SPF aligns with the From domain), and a DMARC policy to start with.

/// One record to add at the domain's DNS host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// The record's full name.
    pub name: String,
    /// `CNAME`, `MX` or `TXT`.
    pub kind: &'static str,
    /// The value to enter.
    pub value: String,
    /// Why it is needed.
    pub why: &'static str,
}

/// The subdomain used as the MAIL FROM (envelope sender) domain.
pub const MAIL_FROM_SUBDOMAIN: &str = "mail";

/// The records for `domain` in `region`. `dkim_tokens` are SES's DKIM tokens for the
/// identity (from `GetEmailIdentity`); without them, placeholders show where they go.
pub fn records(domain: &str, region: &str, dkim_tokens: Option<&[String]>) -> Vec<DnsRecord> {
    let domain = domain.trim().trim_end_matches('.').to_lowercase();
    let placeholders: Vec<String> = (1..=3).map(|i| format!("<dkim-token-{i}>")).collect();
    let tokens = dkim_tokens.filter(|t| !t.is_empty()).unwrap_or(&placeholders);
    let mut out: Vec<DnsRecord> = tokens
        .iter()
        .map(|t| DnsRecord {
            name: format!("{t}._domainkey.{domain}"),
            kind: "CNAME",
            value: format!("{t}.dkim.amazonses.com"),
            why: "DKIM: lets receivers verify that SES signed the mail on behalf of your domain",
        })
        .collect();
    let mail_from = format!("{MAIL_FROM_SUBDOMAIN}.{domain}");
    out.push(DnsRecord {
        name: mail_from.clone(),
        kind: "MX",
        value: format!("10 feedback-smtp.{region}.amazonses.com"),
        why: "MAIL FROM: bounces go back to SES through this subdomain, which carries your domain",
    });
    out.push(DnsRecord {
        name: mail_from,
        kind: "TXT",
        value: "\"v=spf1 include:amazonses.com ~all\"".into(),
        why: "SPF: authorises SES to send for the MAIL FROM subdomain, so SPF aligns with your domain",
    });
    out.push(DnsRecord {
        name: format!("_dmarc.{domain}"),
        kind: "TXT",
        value: format!("\"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r; pct=100\""),
        why: "DMARC: start with p=none and read the aggregate reports; after two to four clean weeks, \
              move to p=quarantine, then p=reject",
    });
    out
}

/// The records as a table a person can copy from.
pub fn format_table(records: &[DnsRecord]) -> String {
    let mut s = String::new();
    for r in records {
        s.push_str(&format!("{:<5} {}\n      {}\n      why: {}\n\n", r.kind, r.name, r.value, r.why));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_cover_dkim_spf_and_dmarc() {
        let tokens = vec!["aaa".to_owned(), "bbb".to_owned(), "ccc".to_owned()];
        let r = records("Acme.com.", "eu-west-1", Some(&tokens));
        assert_eq!(r.len(), 6);
        assert_eq!(r[0].name, "aaa._domainkey.acme.com");
        assert_eq!(r[0].value, "aaa.dkim.amazonses.com");
        assert_eq!(r[3].value, "10 feedback-smtp.eu-west-1.amazonses.com");
        assert!(r[4].value.contains("include:amazonses.com"));
        assert!(r[5].name == "_dmarc.acme.com" && r[5].value.contains("p=none"));
        let r = records("acme.com", "us-east-1", None);
        assert!(r[0].name.starts_with("<dkim-token-1>"));
        assert!(format_table(&r).contains("why: DMARC"));
    }
}
