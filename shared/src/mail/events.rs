//! SES bounce and complaint notifications, as they arrive on the `mail-events` queue: an SNS
//! envelope around SES's event JSON (or the bare event with raw delivery, or an EventBridge
//! event whose `detail` is the SES event). Permanent bounces and complaints become
//! suppressions; transient bounces and other events are ignored.

use serde_json::Value;

use super::EmailAddress;
use super::suppression::{Reason, Suppression};

/// A notification that is not a parseable SES event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an SES notification: {0}")]
pub struct NotAnSesEvent(pub String);

/// The suppressions a notification calls for (none for a transient bounce or a delivery).
///
/// # Errors
/// [`NotAnSesEvent`] if the body is not JSON or has no event type.
pub fn suppressions(body: &str, received_at_ms: i64) -> Result<Vec<Suppression>, NotAnSesEvent> {
    let outer: Value = serde_json::from_str(body).map_err(|e| NotAnSesEvent(format!("not JSON: {e}")))?;
    let event = if let Some(inner) = outer.get("Message").and_then(Value::as_str) {
        serde_json::from_str(inner).map_err(|e| NotAnSesEvent(format!("SNS message is not JSON: {e}")))?
    } else if let Some(detail) = outer.get("detail") {
        detail.clone()
    } else {
        outer
    };
    let kind = event
        .get("eventType")
        .or_else(|| event.get("notificationType"))
        .and_then(Value::as_str)
        .ok_or_else(|| NotAnSesEvent("no eventType or notificationType".into()))?;
    let recipients = |list: Option<&Value>| -> Vec<EmailAddress> {
        list.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("emailAddress").and_then(Value::as_str))
            .filter_map(|a| {
                // SES may give `Name <addr>`; keep the address.
                let a = a.rsplit_once('<').map_or(a, |(_, rest)| rest.trim_end_matches('>'));
                EmailAddress::parse(a).ok()
            })
            .collect()
    };
    let make = |emails: Vec<EmailAddress>, reason, detail: String| {
        emails
            .into_iter()
            .map(|email| Suppression { email, reason, at_ms: received_at_ms, detail: detail.clone() })
            .collect()
    };
    Ok(match kind {
        "Bounce" => {
            let bounce = event.get("bounce").ok_or_else(|| NotAnSesEvent("Bounce without bounce".into()))?;
            if bounce.get("bounceType").and_then(Value::as_str) != Some("Permanent") {
                return Ok(Vec::new());
            }
            let sub = bounce.get("bounceSubType").and_then(Value::as_str).unwrap_or("General");
            make(recipients(bounce.get("bouncedRecipients")), Reason::Bounce, format!("permanent bounce: {sub}"))
        }
        "Complaint" => {
            let complaint =
                event.get("complaint").ok_or_else(|| NotAnSesEvent("Complaint without complaint".into()))?;
            let feedback = complaint.get("complaintFeedbackType").and_then(Value::as_str).unwrap_or("unspecified");
            make(recipients(complaint.get("complainedRecipients")), Reason::Complaint, format!("complaint: {feedback}"))
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sns(event: &Value) -> String {
        json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": event.to_string()})
            .to_string()
    }

    #[test]
    fn permanent_bounces_and_complaints_suppress_and_others_do_not() {
        let hard = json!({"eventType": "Bounce", "bounce": {"bounceType": "Permanent", "bounceSubType": "NoEmail",
            "bouncedRecipients": [{"emailAddress": "Gone <gone@example.com>"}, {"emailAddress": "also@example.com"}]}});
        let s = suppressions(&sns(&hard), 5).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].email.as_str(), "gone@example.com");
        assert_eq!(s[0].reason, Reason::Bounce);
        let soft = json!({"eventType": "Bounce", "bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "a@example.com"}]}});
        assert!(suppressions(&sns(&soft), 5).unwrap().is_empty());
        let complaint = json!({"notificationType": "Complaint", "complaint": {"complaintFeedbackType": "abuse",
            "complainedRecipients": [{"emailAddress": "angry@example.com"}]}});
        let s = suppressions(&complaint.to_string(), 5).unwrap();
        assert_eq!(s[0].reason, Reason::Complaint);
        let bridge = json!({"detail-type": "Email Bounced", "detail": hard});
        assert_eq!(suppressions(&bridge.to_string(), 5).unwrap().len(), 2);
        let delivery = json!({"eventType": "Delivery", "delivery": {}});
        assert!(suppressions(&sns(&delivery), 5).unwrap().is_empty());
        assert!(suppressions("not json", 5).is_err());
        assert!(suppressions("{}", 5).is_err());
    }
}
