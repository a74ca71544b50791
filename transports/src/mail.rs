//! E-mail over SMTP (SPEC section 13): the messages the server sends people, such as an
//! invitation to a group with its token. Sent once the change it is about is durable; a message
//! that cannot be sent is reported to the caller (its answer says so), never retried behind its
//! back, so nothing depends on a message having arrived.

use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use std::time::Duration;

/// How long one message may take to hand over.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[smtp]` table: where messages go out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The SMTP server's host.
    pub host: String,
    /// Its port.
    #[serde(default = "submission_port")]
    pub port: u16,
    /// The sender, as `Leasehold <licenses@vendor.example>` or a bare address.
    pub from: String,
    /// Whether to upgrade the connection with STARTTLS (required when set).
    #[serde(default)]
    pub starttls: bool,
}

fn submission_port() -> u16 {
    587
}

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// The configuration cannot work (a sender that is no address, a host STARTTLS cannot name).
    #[error("SMTP settings: {0}")]
    Config(String),
    /// The recipient is no address.
    #[error("not an e-mail address: {0}")]
    Recipient(String),
    /// The SMTP server refused the message or could not be reached.
    #[error("sending failed: {0}")]
    Send(String),
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// Sends messages through one SMTP server.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// A mailer for `config`; nothing is connected until the first message.
    pub fn new(config: &SmtpConfig) -> Result<Mailer, MailError> {
        let from: Mailbox =
            config.from.parse().map_err(|e| MailError::Config(format!("from {:?}: {e}", config.from)))?;
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host).port(config.port);
        let builder = if config.starttls {
            let tls = TlsParameters::new(config.host.clone()).map_err(|e| MailError::Config(e.to_string()))?;
            builder.tls(Tls::Required(tls))
        } else {
            builder.tls(Tls::None)
        };
        Ok(Mailer { transport: builder.timeout(Some(SEND_TIMEOUT)).build(), from })
    }

    /// Sends `mail`.
    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail.to.parse().map_err(|_| MailError::Recipient(mail.to.clone()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .body(mail.body)
            .map_err(|e| MailError::Send(e.to_string()))?;
        let sent = tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(MailError::Send(e.to_string())),
            Err(_) => Err(MailError::Send("the SMTP server did not answer in time".into())),
        }
    }
}
