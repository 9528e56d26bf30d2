//! Passwords: argon2id with OWASP's recommended parameters (19 MiB, 2 iterations, 1 lane),
//! hashed and verified on a bounded pool of threads ([`HashingPool`]); a strength check
//! (length, and zxcvbn's estimate against its shipped lists of common passwords, names and
//! words); and a dummy verification so that a login for an unknown email costs the same
//! time as one for a known email.

use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::ApiError;
use crate::secret::Secret;

/// The shortest password accepted.
pub const MIN_LEN: usize = 10;
/// The longest password accepted (argon2 hashes any length; this bounds the work).
pub const MAX_LEN: usize = 128;
/// The most memory a stored hash may ask for when it is verified (64 MiB, in 1 KiB blocks):
/// a hash made with more is treated as not matching rather than allocated for.
const MAX_BLOCKS: usize = 64 * 1024;
/// Seconds a client is told to wait when the queue is full: about what the queue takes to
/// drain at the default bound.
pub const RETRY_AFTER_OVERLOADED_SECS: u64 = 1;

fn params() -> Params {
    // OWASP Password Storage Cheat Sheet: argon2id, m=19456 KiB, t=2, p=1.
    Params::new(19_456, 2, 1, None).unwrap_or_default()
}

/// 16 random bytes from the system's source, as a PHC salt.
fn fresh_salt() -> anyhow::Result<SaltString> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Where passwords are hashed and verified: one thread per core, each keeping its own
/// argon2 memory (19 MiB, allocated at its first job and reused for every later one), all
/// taking jobs in arrival order from one queue of at most `queue_limit` waiting jobs.
///
/// Why: hashing on the blocking pool allocated and zeroed a fresh 19 MiB block per hash,
/// on as many threads as requests were waiting, each keeping an allocator arena; ten
/// seconds of logins grew the process to gigabytes. Here memory is bounded by the cores,
/// a saturated pool answers in arrival order (so the slowest wait is close to the typical
/// one), and a request that would wait behind more than `queue_limit` others is refused at
/// once with a 503 and `Retry-After` ([`ApiError::Overloaded`]) instead of waiting without
/// bound. Clones share the pool; its threads start at the first job and end when the last
/// clone is dropped.
#[derive(Clone)]
pub struct HashingPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    workers: usize,
    queue_limit: usize,
    /// Started at the first job, so a process that never sees a password starts no thread.
    jobs: OnceLock<mpsc::SyncSender<Job>>,
}

impl HashingPool {
    /// A pool with one thread per core (as the system reports them) and room for
    /// `queue_limit` waiting jobs (at least 1).
    pub fn new(queue_limit: usize) -> Self {
        Self::with_workers(std::thread::available_parallelism().map_or(1, usize::from), queue_limit)
    }

    /// A pool with `workers` threads (at least 1) and room for `queue_limit` waiting jobs
    /// (at least 1).
    pub fn with_workers(workers: usize, queue_limit: usize) -> Self {
        let (workers, queue_limit) = (workers.max(1), queue_limit.max(1));
        Self { inner: Arc::new(PoolInner { workers, queue_limit, jobs: OnceLock::new() }) }
    }

    fn jobs(&self) -> &mpsc::SyncSender<Job> {
        self.inner.jobs.get_or_init(|| {
            let (jobs, queue) = mpsc::sync_channel::<Job>(self.inner.queue_limit);
            let queue = Arc::new(Mutex::new(queue));
            for n in 0..self.inner.workers {
                let queue = Arc::clone(&queue);
                let started = std::thread::Builder::new().name(format!("argon2-{n}")).spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // The lock is held while waiting, so idle workers line up behind it
                        // and each job goes to exactly one of them, in the queue's order.
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = job else { return };
                        job(&mut memory);
                    }
                });
                if let Err(e) = started {
                    // Fewer threads still work; with none, the queue's receiver is gone
                    // and every job fails at once rather than waiting.
                    tracing::error!(error = %e, "a password hashing thread did not start");
                }
            }
            jobs
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.jobs().try_send(Box::new(move |memory| {
            let _ = tx.send(f(memory));
        })) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::Overloaded { retry_after_secs: RETRY_AFTER_OVERLOADED_SECS });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::Unexpected(anyhow::anyhow!("the password hashing threads have stopped")));
            }
        }
        rx.await.map_err(|_| ApiError::Unexpected(anyhow::anyhow!("a password hash panicked")))
    }

    /// Hashes `password` into a PHC string (algorithm, parameters, salt and hash).
    ///
    /// # Errors
    /// [`ApiError::Overloaded`] when the queue is full; [`ApiError::Unexpected`] if hashing
    /// fails (it does not, for passwords within [`MAX_LEN`]).
    pub async fn hash(&self, password: &Secret<String>) -> Result<String, ApiError> {
        let password = password.clone();
        let salt = fresh_salt()?;
        self.run(move |memory| hash_with(memory, password.expose().as_bytes(), &salt))
            .await?
            .map_err(ApiError::Unexpected)
    }

    /// Whether `password` matches the PHC string `phc` (an empty `phc`, an account without
    /// a password, matches nothing but costs the same time).
    ///
    /// # Errors
    /// [`ApiError::Overloaded`] when the queue is full.
    pub async fn verify(&self, password: &Secret<String>, phc: &str) -> Result<bool, ApiError> {
        let (password, phc, empty) = (password.clone(), phc.to_owned(), phc.is_empty());
        self.run(move |memory| {
            let phc = if empty { dummy_phc() } else { &phc };
            verify_with(memory, password.expose().as_bytes(), phc) && !empty
        })
        .await
    }

    /// Spends the time of one verification, for an account that does not exist.
    ///
    /// # Errors
    /// [`ApiError::Overloaded`] when the queue is full.
    pub async fn verify_dummy(&self, password: &Secret<String>) -> Result<(), ApiError> {
        self.verify(password, "").await.map(|_| ())
    }
}

/// The memory for `params`, grown (once) if needed.
fn blocks<'a>(memory: &'a mut Vec<Block>, params: &Params) -> &'a mut [Block] {
    let n = params.block_count();
    if memory.len() < n {
        memory.resize(n, Block::default());
    }
    &mut memory[..n]
}

/// What argon2's `hash_password` computes, in `memory` instead of a fresh allocation.
/// Argon2 writes every block before it reads it, so what `memory` held before does not
/// matter (RFC 9106 section 3.4).
fn hash_with(memory: &mut Vec<Block>, password: &[u8], salt: &SaltString) -> anyhow::Result<String> {
    let params = params();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = salt.as_salt();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password, salt_bytes, out, blocks(memory, &params))
            .map_err(|_| argon2::password_hash::Error::Password)
    })
    .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("parameters: {e}"))?,
        salt: Some(salt),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// What argon2's `verify_password` decides, in `memory`: the algorithm, version, parameters
/// and salt come from the stored hash, and the outputs are compared in constant time
/// (`Output`'s equality).
fn verify_with(memory: &mut Vec<Block>, password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let Ok(version) = hash.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&hash) else { return false };
    if params.block_count() > MAX_BLOCKS {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else { return false };
    let argon = Argon2::new(algorithm, version, params.clone());
    Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password, salt_bytes, out, blocks(memory, &params))
            .map_err(|_| argon2::password_hash::Error::Password)
    })
    .is_ok_and(|computed| computed == expected)
}

fn dummy_phc() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let Ok(salt) = fresh_salt() else { return String::new() };
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(b"not a real password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Why a password is refused (safe to show: it never repeats the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WeakPassword(pub String);

/// Refuses short, long and guessable passwords; `context` holds words the password must not
/// lean on (the email address, the product name).
///
/// # Errors
/// [`WeakPassword`] saying why.
pub fn check_strength(password: &Secret<String>, context: &[&str]) -> Result<(), WeakPassword> {
    let p = password.expose();
    let chars = p.chars().count();
    if chars < MIN_LEN {
        return Err(WeakPassword(format!("use at least {MIN_LEN} characters")));
    }
    if chars > MAX_LEN {
        return Err(WeakPassword(format!("use at most {MAX_LEN} characters")));
    }
    let estimate = zxcvbn::zxcvbn(p, context);
    if u8::from(estimate.score()) < 3 {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map_or_else(|| "this password is too easy to guess".to_owned(), |w| w.to_string());
        return Err(WeakPassword(format!("{why}; try a longer phrase of unrelated words")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &str) -> Secret<String> {
        Secret::new(p.to_owned())
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let pool = HashingPool::with_workers(2, 8);
        let a = pool.hash(&s("correct horse battery staple")).await.unwrap();
        let b = pool.hash(&s("correct horse battery staple")).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(pool.verify(&s("correct horse battery staple"), &a).await.unwrap());
        assert!(!pool.verify(&s("correct horse battery stapler"), &a).await.unwrap());
        assert!(!pool.verify(&s("x"), "not a phc string").await.unwrap());
        assert!(!pool.verify(&s("not a real password"), "").await.unwrap());
    }

    #[tokio::test]
    async fn hashes_are_argon2s_own_both_ways() {
        use argon2::password_hash::PasswordVerifier;
        let pool = HashingPool::with_workers(1, 8);
        let ours = pool.hash(&s("violet-anchor-trombone-47")).await.unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        assert!(argon.verify_password(b"violet-anchor-trombone-47", &PasswordHash::new(&ours).unwrap()).is_ok());
        // A hash made elsewhere, with other parameters (argon2i, less memory, a longer
        // output), verifies on the pool's reused memory, after a larger one ran in it.
        let salt = fresh_salt().unwrap();
        let other = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(8_192, 3, 1, Some(48)).unwrap());
        let theirs = other.hash_password(b"violet-anchor-trombone-47", &salt).unwrap().to_string();
        assert!(pool.verify(&s("violet-anchor-trombone-47"), &theirs).await.unwrap());
        assert!(!pool.verify(&s("violet-anchor-trombone-48"), &theirs).await.unwrap());
        // A stored hash asking for more memory than the bound is not allocated for.
        let greedy = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(65 * 1024, 1, 1, None).unwrap());
        let greedy = greedy.hash_password(b"violet-anchor-trombone-47", &salt).unwrap().to_string();
        assert!(!pool.verify(&s("violet-anchor-trombone-47"), &greedy).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_nothing_is_lost() {
        // One thread, kept busy, and room for two waiting jobs.
        let pool = HashingPool::with_workers(1, 2);
        let (release, held) = mpsc::channel::<()>();
        let (started, busy) = tokio::sync::oneshot::channel();
        let blocker = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move |_| {
                    started.send(()).unwrap();
                    held.recv().unwrap();
                })
                .await
            }
        });
        busy.await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..2 {
            let pool = pool.clone();
            waiting.push(tokio::spawn(async move { pool.hash(&s("correct horse battery staple")).await }));
            // Lets the task queue its job (this runtime has one thread).
            tokio::task::yield_now().await;
        }
        let refused = pool.verify(&s("correct horse battery staple"), "").await;
        assert!(
            matches!(refused, Err(ApiError::Overloaded { retry_after_secs: RETRY_AFTER_OVERLOADED_SECS })),
            "{refused:?}"
        );
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        for w in waiting {
            let phc = w.await.unwrap().unwrap();
            assert!(pool.verify(&s("correct horse battery staple"), &phc).await.unwrap());
        }
    }

    #[test]
    fn weak_passwords_are_refused() {
        for weak in ["short", "password123", "qwertyuiop", "1234567890", "ada@example.com1"] {
            assert!(check_strength(&s(weak), &["ada@example.com", "ada"]).is_err(), "{weak}");
        }
        let long = "a".repeat(200);
        assert!(check_strength(&s(&long), &[]).is_err());
        assert!(check_strength(&s("violet-anchor-trombone-47"), &["ada@example.com"]).is_ok());
        let e = check_strength(&s("password123"), &[]).unwrap_err();
        assert!(!e.to_string().contains("password123"));
    }
}
