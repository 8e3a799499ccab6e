//! A real SMTP server on 127.0.0.1:0 that keeps every message, for tests to read codes from.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    /// The code, which stands on its own line in the text part.
    pub fn six_digit_code(&self) -> String {
        self.text
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or_else(|| panic!("no code in {:?}", self.text))
            .to_owned()
    }

    pub fn link(&self, path: &str) -> String {
        self.text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("http") && l.contains(path))
            .unwrap_or_else(|| panic!("no {path} link in {:?}", self.text))
            .to_owned()
    }
}

#[derive(Clone)]
pub struct Mailbox {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<Mail>>>,
    /// The server's mailer, so reads wait for mails it sends after answering.
    mailer: Arc<std::sync::OnceLock<Arc<clef::mail::Mailer>>>,
}

fn parse(raw: &[u8], to: Vec<String>) -> Mail {
    let m = mail_parser::MessageParser::default().parse(raw).expect("a MIME message");
    Mail {
        to,
        subject: m.subject().unwrap_or("").to_owned(),
        text: m.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
        html: m.body_html(0).map(|t| t.into_owned()).unwrap_or_default(),
    }
}

impl Mailbox {
    pub async fn start() -> Mailbox {
        Self::start_on("127.0.0.1:0").await
    }

    /// On a chosen loopback address: a mail server that comes up after clef started.
    pub async fn start_on(addr: &str) -> Mailbox {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let messages: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let store = messages.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r);
                    let _ = w.write_all(b"220 mailbox.test ESMTP\r\n").await;
                    let mut rcpt = Vec::new();
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") {
                            b"250-mailbox.test\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            let a = line[8..].trim().trim_start_matches('<').split('>').next().unwrap_or("").to_owned();
                            rcpt.push(a);
                            b"250 OK\r\n"
                        } else if upper.starts_with("DATA") {
                            let _ = w.write_all(b"354 go ahead\r\n").await;
                            let mut raw = Vec::new();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                let l = line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line);
                                raw.extend_from_slice(l.as_bytes());
                            }
                            store.lock().unwrap().push(parse(&raw, std::mem::take(&mut rcpt)));
                            b"250 stored\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            // HELO, MAIL FROM, RSET, NOOP
                            b"250 OK\r\n"
                        };
                        if w.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Mailbox {
            addr,
            messages,
            mailer: Arc::default(),
        }
    }

    pub fn watch(&self, mailer: Arc<clef::mail::Mailer>) {
        let _ = self.mailer.set(mailer);
    }

    /// Some pages answer before their mail is sent: wait (bounded) until it is out.
    fn settle(&self) {
        let Some(mailer) = self.mailer.get().cloned() else { return };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), mailer.settled()).await;
            })
        });
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn to(&self, email: &str) -> Vec<Mail> {
        self.settle();
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t == email))
            .cloned()
            .collect()
    }

    pub fn last_to(&self, email: &str) -> Mail {
        self.to(email).pop().unwrap_or_else(|| panic!("no mail to {email}"))
    }

    pub fn count(&self) -> usize {
        self.settle();
        self.messages.lock().unwrap().len()
    }
}
