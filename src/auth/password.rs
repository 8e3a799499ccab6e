//! Passwords: argon2id with OWASP parameters, on a fixed pool of hashing threads, so a login
//! flood neither starves the async runtime nor grows memory beyond one argon2 block per thread.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::sync::{Semaphore, oneshot};

use super::{AuthError, Outcome};
use crate::store::Db;

/// A real argon2id hash of a random throwaway password. Unknown emails are checked against it
/// so they cost exactly what a wrong password costs.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9AUGx0ipOnlMDpYwJKBG/S70ubJGFKrBkP8cCUJ6zvQ";

/// A hashing thread gives its block back after this long without work, so memory returns to
/// idle after a burst of logins.
const IDLE_RELEASE: Duration = Duration::from_secs(3);

/// Blocks reserved per buffer: 33 MiB of address space, of which only the 19 MiB argon2 uses
/// is ever touched. glibc serves requests above its largest dynamic mmap threshold (32 MiB)
/// with mmap and unmaps them on free; a 19 MiB request instead ends up in a per-thread arena
/// that is never trimmed (resident memory measured 15 to 587 MiB under 20 parallel logins).
const RESERVED_BLOCKS: usize = 33 * 1024;

/// Stored hashes asking for more than this (256 MiB) are refused rather than computed.
const MAX_BLOCKS: usize = 256 * 1024;

enum Work {
    Hash(String),
    Verify(String, String),
}

enum Done {
    Hashed(Result<String, String>),
    Verified(bool),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Done>,
}

struct Pool {
    /// One per thread: a job is queued only when a thread is free to take it, so the channel
    /// never blocks the runtime and waiting logins queue here, not in memory per hash.
    permits: Semaphore,
    jobs: SyncSender<Job>,
}

#[derive(Clone)]
pub struct Hasher {
    pool: Arc<Pool>,
}

impl Hasher {
    /// Starts `threads` hashing threads; they stop when the last `Hasher` clone is dropped.
    pub fn new(threads: usize) -> Hasher {
        let threads = threads.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("clef-argon2-{i}"))
                .spawn(move || worker(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Hasher {
            pool: Arc::new(Pool {
                permits: Semaphore::new(threads),
                jobs: tx,
            }),
        }
    }

    async fn run(&self, work: Work) -> Result<Done, AuthError> {
        let _permit = self.pool.permits.acquire().await.map_err(|e| AuthError::Hash(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        match self.pool.jobs.try_send(Job { work, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(AuthError::Hash("hashing queue full".into())),
            Err(TrySendError::Disconnected(_)) => return Err(AuthError::Hash("no hashing thread".into())),
        }
        answer.await.map_err(|_| AuthError::Hash("hashing thread stopped".into()))
    }

    /// argon2id, m=19 MiB, t=2, p=1 (the crate's defaults are OWASP's minimum).
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        match self.run(Work::Hash(password.to_owned())).await? {
            Done::Hashed(r) => r.map_err(AuthError::Hash),
            Done::Verified(_) => Err(AuthError::Hash("unexpected answer".into())),
        }
    }

    /// Constant work whether or not `stored` exists; the output compare is constant-time.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, AuthError> {
        let real = stored.is_some();
        let hash = stored.unwrap_or(DUMMY_HASH).to_owned();
        match self.run(Work::Verify(password.to_owned(), hash)).await? {
            Done::Verified(ok) => Ok(real && ok),
            Done::Hashed(_) => Err(AuthError::Hash("unexpected answer".into())),
        }
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let next = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv_timeout(IDLE_RELEASE)
        };
        match next {
            Ok(job) => {
                let done = match job.work {
                    Work::Hash(pw) => Done::Hashed(hash_with(pw.as_bytes(), &mut memory)),
                    Work::Verify(pw, phc) => Done::Verified(verify_with(pw.as_bytes(), &phc, &mut memory)),
                };
                let _ = job.reply.send(done);
            }
            Err(RecvTimeoutError::Timeout) => {
                memory = Vec::new();
                // Step aside before locking again, so an idle thread waiting for the lock
                // gets its own timeout and frees its block too (a mutex is not fair).
                // (The lint is about tests waiting on time; this is a real hand-over.)
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The thread's block, grown to `count` on first use and reused after.
fn blocks(memory: &mut Vec<Block>, count: usize) -> Option<&mut [Block]> {
    if count > MAX_BLOCKS {
        return None;
    }
    if memory.len() < count {
        *memory = Vec::with_capacity(count.max(RESERVED_BLOCKS));
        memory.resize(count, Block::default());
    }
    Some(&mut memory[..count])
}

fn hash_with(password: &[u8], memory: &mut Vec<Block>) -> Result<String, String> {
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let mem = blocks(memory, params.block_count()).ok_or("argon2 memory")?;
    argon
        .hash_password_into_with_memory(password, &salt, &mut out, mem)
        .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// The PHC string's own algorithm, version and parameters, so hashes made with other
/// settings still verify.
fn verify_with(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let Ok(algorithm) = Algorithm::new(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else { return false };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Some(mem) = blocks(memory, params.block_count()) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, mem)
        .is_err()
    {
        return false;
    }
    out.ct_eq(expected.as_bytes()).into()
}

/// What clef accepts as a new password: 8 to 1,024 characters that zxcvbn does not find
/// guessable (score 2 or more, with the email counted as known to an attacker). Returns the
/// catalogue key of the problem.
pub fn policy(password: &str, email: &str) -> Result<(), &'static str> {
    let len = password.chars().count();
    if len < 8 {
        return Err("signup.password_too_short");
    }
    if password.len() > 1024 {
        return Err("signup.password_too_long");
    }
    let local = email.split('@').next().unwrap_or("");
    if (zxcvbn::zxcvbn(password, &[email, local]).score() as u8) < 2 {
        return Err("signup.password_too_weak");
    }
    Ok(())
}

/// Email + password. No hint of whether the email exists: the same work and the same answer.
pub async fn verify(db: &Db, hasher: &Hasher, email: &str, password: &str) -> Result<Outcome, AuthError> {
    let user = db.user_by_email(email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.as_deref());
    let ok = hasher.verify(password, stored).await?;
    match (ok, user) {
        (true, Some(u)) if u.password_pending => Ok(Outcome::Unverified { user_id: u.user_id }),
        (true, Some(u)) => Ok(Outcome::Done { user_id: u.user_id }),
        _ => Ok(Outcome::Retry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        assert_eq!(policy("short", "a@b.c"), Err("signup.password_too_short"));
        assert_eq!(policy("password", "a@b.c"), Err("signup.password_too_weak"));
        assert_eq!(policy("12345678", "a@b.c"), Err("signup.password_too_weak"));
        assert_eq!(policy("anastasia1", "anastasia1@b.c"), Err("signup.password_too_weak"));
        policy("correct horse battery", "a@b.c").unwrap();
    }

    #[test]
    fn dummy_hash_is_a_valid_argon2id_hash() {
        use argon2::PasswordVerifier;
        let parsed = argon2::PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert!(Argon2::default().verify_password(b"wrong", DUMMY_HASH).is_err());
    }

    /// The pool's own PHC strings are what the argon2 crate makes and checks, both ways.
    #[test]
    fn pool_hashes_match_the_argon2_crate() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let mut memory = Vec::new();
        let ours = hash_with(b"correct horse", &mut memory).unwrap();
        Argon2::default().verify_password(b"correct horse", ours.as_str()).unwrap();
        let theirs = Argon2::default().hash_password(b"battery staple").unwrap().to_string();
        assert!(verify_with(b"battery staple", &theirs, &mut memory));
        assert!(!verify_with(b"battery stapler", &theirs, &mut memory));
        // Other parameters verify with their own memory size.
        let small = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(4096, 1, 1, None).unwrap());
        let other = small.hash_password(b"tiny").unwrap().to_string();
        assert!(verify_with(b"tiny", &other, &mut memory));
        assert!(!verify_with(b"tiny", "not a phc string", &mut memory));
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$9AUGx0ipOnlMDpYwJKBG/S70ubJGFKrBkP8cCUJ6zvQ";
        assert!(!verify_with(b"x", huge, &mut memory), "refused, not computed");
    }

    #[tokio::test]
    async fn many_parallel_verifies_share_the_pool() {
        let h = Hasher::new(2);
        let hash = h.hash("correct horse").await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (h, hash) = (h.clone(), hash.clone());
                tokio::spawn(async move { h.verify(if i % 2 == 0 { "correct horse" } else { "wrong" }, Some(&hash)).await })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().unwrap(), i % 2 == 0);
        }
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let h = Hasher::new(1);
        let hash = h.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!h.verify("wrong", Some(&hash)).await.unwrap());
        assert!(!h.verify("anything", None).await.unwrap());
    }
}
