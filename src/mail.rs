//! Outgoing mail: SMTP when `CLEF_SMTP_URL` is set, else `.eml` files in the outbox folder so a
//! fresh `clef serve` works and a newcomer can read the code.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Config;

/// How long a request waits for the mail server before answering anyway.
const SEND_TIMEOUT: Duration = Duration::from_secs(3);
/// Background retries after a failed or slow send.
const RETRY_DELAYS: [Duration; 3] = [Duration::from_secs(5), Duration::from_secs(20), Duration::from_secs(60)];

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail settings: {0}")]
    Config(String),
    #[error("composing: {0}")]
    Compose(String),
    #[error("sending: {0}")]
    Send(String),
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Mails hold live codes and links: the folder is 0700 and each file 0600, written here
    /// rather than by lettre's file transport, which leaves them world-readable.
    Outbox(PathBuf),
}

#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    /// First attempts of `deliver_later` mails still running.
    in_flight: Arc<tokio::sync::watch::Sender<usize>>,
    // ops
    /// Mails waiting in the background for their next retry.
    retrying: Arc<tokio::sync::watch::Sender<usize>>,
    /// Set at shutdown: waiting retries go at once, and are not rescheduled.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

/// A rendered message, ready to go.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mailer {
    pub fn new(config: &Config) -> Result<Mailer, MailError> {
        let from: Mailbox = config
            .mail_from
            .parse()
            .map_err(|e| MailError::Config(format!("CLEF_MAIL_FROM: {e}")))?;
        let transport = match &config.smtp_url {
            Some(url) => {
                let t: AsyncSmtpTransport<Tokio1Executor> = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| MailError::Config(format!("CLEF_SMTP_URL: {e}")))?
                    .timeout(Some(SEND_TIMEOUT))
                    .build();
                Transport::Smtp(t)
            }
            None => {
                prepare_outbox(&config.outbox_dir).map_err(|e| MailError::Config(format!("CLEF_OUTBOX_DIR: {e}")))?;
                Transport::Outbox(config.outbox_dir.clone())
            }
        };
        Ok(Mailer {
            transport,
            from,
            in_flight: Arc::new(tokio::sync::watch::Sender::new(0)),
            retrying: Arc::new(tokio::sync::watch::Sender::new(0)),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
        })
    }

    fn compose(&self, m: &Outgoing) -> Result<Message, MailError> {
        let to: Mailbox = m.to.parse().map_err(|e| MailError::Compose(format!("recipient: {e}")))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .multipart(MultiPart::alternative_plain_html(m.text.clone(), m.html.clone()))
            .map_err(|e| MailError::Compose(e.to_string()))
    }

    async fn send_once(&self, message: Message) -> Result<(), MailError> {
        let sent = match &self.transport {
            Transport::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| MailError::Send(e.to_string())),
            Transport::Outbox(dir) => write_outbox(dir, &message.formatted())
                .await
                .map_err(|e| MailError::Send(format!("{}: {e}", dir.display()))),
        };
        match &sent {
            Ok(()) => crate::telemetry::mail_sent(),
            Err(_) => crate::telemetry::mail_failed(),
        }
        sent
    }

    /// At shutdown: sends every queued mail now (first attempts, and retries without their
    /// wait), and resolves when none is left. The caller bounds the wait.
    pub async fn flush(&self) {
        self.stopping.send_replace(true);
        self.settled().await;
        let mut rx = self.retrying.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Sends after the caller has answered: for mails that go only to some of the addresses a
    /// visitor may type (a reset code for a known address, nothing for an unknown one), waiting
    /// for the mail server would tell the two apart by time (OWASP WSTG-IDNT-04). Failures are
    /// retried as in `deliver`, and only logged.
    pub fn deliver_later(self: &Arc<Self>, m: Outgoing) {
        self.in_flight.send_modify(|n| *n += 1);
        let mailer = self.clone();
        tokio::spawn(async move {
            mailer.deliver(m).await;
            mailer.in_flight.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    /// Resolves once no `deliver_later` mail is on its first attempt (retries excluded).
    pub async fn settled(&self) {
        let mut rx = self.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Sends within a short wait. On failure or a slow server, retries in the background and
    /// returns false, so the page can tell the user that the mail may not arrive.
    pub async fn deliver(self: &Arc<Self>, m: Outgoing) -> bool {
        let message = match self.compose(&m) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::error!(error = %e, "mail not composed");
                return false;
            }
        };
        if let Transport::Outbox(dir) = &self.transport {
            // No code in the log: only what the message is and where to find it.
            tracing::info!(to = ?m.to, subject = %m.subject, outbox = %dir.display(), "mail written to the outbox");
        }
        match tokio::time::timeout(SEND_TIMEOUT, self.send_once(message.clone())).await {
            Ok(Ok(())) => true,
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::warn!(to = ?m.to, error = %why, "mail not sent; retrying in the background");
                let mailer = self.clone();
                mailer.retrying.send_modify(|n| *n += 1);
                tokio::spawn(async move {
                    let mut stopping = mailer.stopping.subscribe();
                    let mut sent = false;
                    for (i, delay) in RETRY_DELAYS.iter().enumerate() {
                        let last = *stopping.borrow();
                        if !last {
                            tokio::select! {
                                () = tokio::time::sleep(*delay) => {}
                                _ = stopping.wait_for(|s| *s) => {}
                            }
                        }
                        match mailer.send_once(message.clone()).await {
                            Ok(()) => {
                                tracing::info!(attempt = i + 2, "mail sent on retry");
                                sent = true;
                                break;
                            }
                            Err(e) => tracing::warn!(attempt = i + 2, error = %e, "mail retry failed"),
                        }
                        // At shutdown one immediate try is all there is time for.
                        if *stopping.borrow() {
                            break;
                        }
                    }
                    if !sent {
                        crate::telemetry::mail_dropped();
                        tracing::error!("mail given up after retries");
                    }
                    mailer.retrying.send_modify(|n| *n = n.saturating_sub(1));
                });
                false
            }
        }
    }
}

/// Creates the outbox owner-only, or narrows an existing one that others could read.
fn prepare_outbox(dir: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
                tracing::warn!(outbox = %dir.display(), was = format!("{mode:o}"), "outbox folder was open to others; narrowed to 700");
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir),
        Err(e) => Err(e),
    }
}

/// One `.eml` file, created 0600 under a fresh random name. It is written under a hidden
/// name and renamed once complete, so whatever picks up `*.eml` never reads half a mail.
async fn write_outbox(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (dir, bytes) = (dir.to_owned(), bytes.to_owned());
    tokio::task::spawn_blocking(move || {
        prepare_outbox(&dir)?;
        let name = crate::secret::random_token(12);
        let partial = dir.join(format!(".{name}.partial"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        let written = f.write_all(&bytes).and_then(|()| f.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, dir.join(format!("{name}.eml")))
    })
    .await
    .map_err(std::io::Error::other)?
}
