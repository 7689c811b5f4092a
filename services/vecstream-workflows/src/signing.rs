//! Signed reviews: a reviewer's Ed25519 key signs a statement that names the job, the review
//! it answers and the decision; the worker checks it against the keys it trusts
//! (`review.authorized_keys`) before the job acts on it. Whoever can reach the Temporal
//! namespace can still send a `review`, but only a key holder can make one count.
//!
//! Formats (one line each, like OpenSSH's):
//! - secret key file: `ed25519-secret:<base64 32-byte seed> <name>` (mode 0600)
//! - trusted key (`authorized_keys` line): `ed25519:<base64 32-byte public key> <name>`
//! - fingerprint: `SHA256:<unpadded base64 of the public key's SHA-256>`
//!
//! The signed bytes are the statement's JSON text exactly as sent (the payload carries it as
//! a string), so nothing is re-serialised before the signature is checked.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of a public key (`ed25519:<base64>`).
pub const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";
const STATEMENT_VERSION: u32 = 1;
/// Longest review comment taken (bytes).
pub const MAX_COMMENT_BYTES: usize = 4096;
const MAX_STATEMENT_BYTES: usize = 8192;
const MAX_NAME_BYTES: usize = 128;
/// How far a signed start's time may be from the job's start (clock skew between the
/// starter's machine and Temporal, plus the time to reach Temporal).
const START_SKEW_MS: i64 = 5 * 60 * 1000;

/// Why a key or key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error(
        "{path} can be read by other users (mode {mode:o}); a reviewer's secret key must be \
         private: chmod 600 {path}"
    )]
    Exposed { path: String, mode: u32 },
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
}

fn invalid(origin: &str, message: impl Into<String>) -> KeyError {
    KeyError::Invalid {
        origin: origin.to_owned(),
        message: message.into(),
    }
}

/// A reviewer's name as keys carry it: 1-128 bytes, no whitespace or control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "a reviewer name is 1 to {MAX_NAME_BYTES} bytes, not {}",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "a reviewer name has no spaces or control characters: {name:?}"
        ));
    }
    Ok(())
}

/// `SHA256:<unpadded base64>` of a public key, as printed and recorded.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(key.as_bytes()))
    )
}

fn public_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_PREFIX}{}", STANDARD.encode(key.as_bytes()))
}

fn parse_public(text: &str) -> Result<VerifyingKey, String> {
    let b64 = text
        .strip_prefix(PUBLIC_PREFIX)
        .ok_or_else(|| format!("a public key starts with {PUBLIC_PREFIX}"))?;
    let bytes: [u8; 32] = STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("a public key is 32 bytes in base64")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key".to_owned())
}

/// The first line of `text` that is neither blank nor a `#` comment, split into its key and
/// name.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (key, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        Some((i + 1, key, name.trim()))
    })
}

/// A reviewer's secret key and name. Its `Debug` shows the name and fingerprint only.
pub struct ReviewerKey {
    key: SigningKey,
    name: String,
}

impl std::fmt::Debug for ReviewerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewerKey")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl ReviewerKey {
    /// A new key for `name`, from the operating system's randomness.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        check_name(name).map_err(|m| invalid("reviewer name", m))?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
            name: name.to_owned(),
        })
    }

    /// Parses a secret key file's text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let (line, key, name) = key_lines(text)
            .next()
            .ok_or_else(|| invalid(origin, "no key in it"))?;
        let origin = format!("{origin}, line {line}");
        let b64 = key.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            invalid(
                &origin,
                format!("a secret key starts with {SECRET_PREFIX} (is this the public key?)"),
            )
        })?;
        let seed: [u8; 32] = STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid(&origin, "a secret key is 32 bytes in base64"))?;
        check_name(name).map_err(|m| invalid(&origin, m))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
            name: name.to_owned(),
        })
    }

    /// Reads a secret key file; refuses one that other users can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let read = |source| KeyError::Read {
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Exposed { path: shown, mode });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text, &shown)
    }

    /// Writes the secret key to a new file, readable by its owner only; never overwrites.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        let write = |source| KeyError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(write)?;
        let text = format!(
            "# vecstream reviewer key of {}: keep it private\n{SECRET_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(self.key.to_bytes()),
            self.name
        );
        file.write_all(text.as_bytes()).map_err(write)?;
        file.sync_all().map_err(write)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `review.authorized_keys` line of this key: `ed25519:<base64> <name>`.
    pub fn public_line(&self) -> String {
        format!("{} {}", public_text(&self.key.verifying_key()), self.name)
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key.verifying_key())
    }

    /// Signs `statement`: the payload a job takes (`review` update or signal, or a start).
    pub fn sign(&self, statement: &Statement) -> SignedStatement {
        let text = serde_json::to_string(statement).expect("a statement serialises");
        let signature = self.key.sign(text.as_bytes());
        SignedStatement {
            statement: text,
            public_key: public_text(&self.key.verifying_key()),
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }
}

/// What a signature is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A review decision on one open review of one job.
    Review,
    /// Who started a job (the four-eyes rule compares it with the reviewer).
    Start,
    /// A reindex's rollback in its rollback window, bound to the approved review.
    Rollback,
}

/// The signed text: which job, which of its reviews, what decision, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub v: u32,
    pub purpose: Purpose,
    pub workflow_id: String,
    /// The open review's id (`review_id` in the job's `progress`); empty for a start.
    #[serde(default)]
    pub review_id: String,
    #[serde(default)]
    pub approve: bool,
    #[serde(default)]
    pub comment: String,
    pub signed_at_ms: i64,
}

impl Statement {
    /// A rollback of `workflow_id`, whose approved review is `review_id`, signed now.
    pub fn rollback(workflow_id: &str, review_id: &str, comment: &str) -> Self {
        Self {
            purpose: Purpose::Rollback,
            approve: false,
            ..Self::review(workflow_id, review_id, false, comment)
        }
    }

    /// A review decision on review `review_id` of `workflow_id`, signed now.
    pub fn review(workflow_id: &str, review_id: &str, approve: bool, comment: &str) -> Self {
        Self {
            v: STATEMENT_VERSION,
            purpose: Purpose::Review,
            workflow_id: workflow_id.to_owned(),
            review_id: review_id.to_owned(),
            approve,
            comment: comment.to_owned(),
            signed_at_ms: now_ms(),
        }
    }

    /// The start of `workflow_id`, signed now.
    pub fn start(workflow_id: &str) -> Self {
        Self {
            v: STATEMENT_VERSION,
            purpose: Purpose::Start,
            workflow_id: workflow_id.to_owned(),
            review_id: String::new(),
            approve: false,
            comment: String::new(),
            signed_at_ms: now_ms(),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A statement with its signer's public key and signature: the `review` payload (also what
/// the stock `temporal` CLI sends, from `vecstream review sign`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedStatement {
    /// The [`Statement`] as JSON text: exactly the signed bytes.
    pub statement: String,
    /// `ed25519:<base64>`.
    pub public_key: String,
    /// Base64 of the 64-byte Ed25519 signature.
    pub signature: String,
}

/// Why a review was refused. Each refusal is recorded in the job's `progress`
/// (`refused_reviews`) and in the worker's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "unsigned: a review must be signed with a reviewer's key (`vecstream review approve \
         --key FILE`, or `vecstream review sign` for the stock temporal CLI)"
    )]
    Unsigned,
    #[error("malformed review: {0}")]
    Malformed(String),
    #[error("signed by key {fingerprint}, which is not among the worker's trusted reviewer keys")]
    UnknownKey { fingerprint: String },
    #[error("the signature does not match the statement (key {fingerprint})")]
    BadSignature { fingerprint: String },
    #[error("signed for {signed_for}, not for this job")]
    OtherJob { signed_for: String },
    #[error(
        "signed for review {signed_for:?}, not for the open review {open:?} (sign again for \
         this one)"
    )]
    OtherReview { signed_for: String, open: String },
    #[error("signed for a {0:?}, not for this request")]
    WrongPurpose(Purpose),
    #[error("four-eyes: {reviewer} started this job and cannot approve it")]
    SelfApproval { reviewer: String },
    #[error(
        "four-eyes: the job's starter is not known (it was started without a reviewer key), \
         so no approval can show a second pair of eyes"
    )]
    UnverifiedStarter,
    #[error("the worker cannot check reviews: {0}")]
    NoKeyring(String),
}

impl Refusal {
    /// A short, stable name of the refusal (logs, metrics, `refused_reviews`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::Malformed(_) => "malformed",
            Self::UnknownKey { .. } => "unknown_key",
            Self::BadSignature { .. } => "bad_signature",
            Self::OtherJob { .. } => "other_job",
            Self::OtherReview { .. } => "other_review",
            Self::WrongPurpose(_) => "wrong_purpose",
            Self::SelfApproval { .. } => "four_eyes_self_approval",
            Self::UnverifiedStarter => "four_eyes_unverified_starter",
            Self::NoKeyring(_) => "no_keyring",
        }
    }
}

/// A key the worker trusts, with the name it answers to.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub name: String,
    pub fingerprint: String,
    key: VerifyingKey,
}

/// The reviewer keys a worker trusts (`review.authorized_keys`).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<TrustedKey>,
}

impl Keyring {
    /// Parses `authorized_keys` text: one `ed25519:<base64> <name>` per line, `#` comments.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let mut keys: Vec<TrustedKey> = Vec::new();
        for (line, key, name) in key_lines(text) {
            let origin = format!("{origin}, line {line}");
            let key = parse_public(key).map_err(|m| invalid(&origin, m))?;
            check_name(name).map_err(|m| invalid(&origin, m))?;
            let fingerprint = fingerprint(&key);
            if let Some(other) = keys.iter().find(|k| k.fingerprint == fingerprint) {
                return Err(invalid(
                    &origin,
                    format!(
                        "key {fingerprint} is listed twice ({} and {name})",
                        other.name
                    ),
                ));
            }
            keys.push(TrustedKey {
                name: name.to_owned(),
                fingerprint,
                key,
            });
        }
        Ok(Self { keys })
    }

    /// Reads an `authorized_keys` file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `signed`'s signature against the trusted keys; returns its statement and the
    /// key that signed it.
    pub fn verify(&self, signed: &SignedStatement) -> Result<(Statement, &TrustedKey), Refusal> {
        if signed.signature.is_empty() {
            return Err(Refusal::Unsigned);
        }
        if signed.statement.len() > MAX_STATEMENT_BYTES {
            return Err(Refusal::Malformed(format!(
                "the statement is over {MAX_STATEMENT_BYTES} bytes"
            )));
        }
        let key = parse_public(&signed.public_key).map_err(Refusal::Malformed)?;
        let fingerprint = fingerprint(&key);
        let trusted =
            self.keys
                .iter()
                .find(|k| k.key == key)
                .ok_or_else(|| Refusal::UnknownKey {
                    fingerprint: fingerprint.clone(),
                })?;
        let signature = STANDARD
            .decode(&signed.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or_else(|| Refusal::Malformed("a signature is 64 bytes in base64".into()))?;
        trusted
            .key
            .verify(signed.statement.as_bytes(), &signature)
            .map_err(|_| Refusal::BadSignature { fingerprint })?;
        let statement: Statement = serde_json::from_str(&signed.statement)
            .map_err(|e| Refusal::Malformed(format!("the statement: {e}")))?;
        if statement.v != STATEMENT_VERSION {
            return Err(Refusal::Malformed(format!(
                "statement version {} (this worker reads {STATEMENT_VERSION})",
                statement.v
            )));
        }
        Ok((statement, trusted))
    }
}

/// What a review is checked against: the job and its open review as the workflow knows
/// them, and the worker's rule.
#[derive(Debug, Clone, Copy)]
pub struct ReviewContext<'a> {
    pub workflow_id: &'a str,
    /// The id the statement must name: the open review's (for a rollback, the approved
    /// review's).
    pub review_id: &'a str,
    /// What the statement must be signed for (`Review` or `Rollback`).
    pub purpose: Purpose,
    /// The job's signed start, if it was started with a key.
    pub starter: Option<&'a SignedStatement>,
    /// When the job started (ms since the epoch): its signed start must be from then.
    pub started_at_ms: i64,
    /// `review.four_eyes`: an approval must come from someone other than the starter.
    pub four_eyes: bool,
}

/// A review that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReview {
    pub approve: bool,
    pub comment: String,
    /// The trusted key's name.
    pub reviewer: String,
    pub key_fingerprint: String,
    /// The verified starter's name, if the start was signed by a trusted key.
    pub starter: Option<String>,
}

/// The payload of a `review` update or signal as a [`SignedStatement`]: any JSON is taken
/// (a stock CLI user may send anything), and what is not a signed statement is refused.
pub fn signed_of(request: &serde_json::Value) -> Result<SignedStatement, Refusal> {
    let serde_json::Value::Object(fields) = request else {
        return Err(Refusal::Malformed(
            "a review is a JSON object {statement, public_key, signature}".into(),
        ));
    };
    if !fields.contains_key("signature") {
        return Err(Refusal::Unsigned);
    }
    serde_json::from_value(request.clone()).map_err(|e| Refusal::Malformed(e.to_string()))
}

/// Checks a review request: signed by a trusted key, for this job and its open review, and
/// (four-eyes) not approved by whoever started the job.
pub fn check_review(
    keyring: &Keyring,
    request: &serde_json::Value,
    cx: ReviewContext<'_>,
) -> Result<VerifiedReview, Refusal> {
    let signed = signed_of(request)?;
    let (statement, key) = keyring.verify(&signed)?;
    if statement.purpose != cx.purpose || cx.purpose == Purpose::Start {
        return Err(Refusal::WrongPurpose(statement.purpose));
    }
    if statement.workflow_id != cx.workflow_id {
        return Err(Refusal::OtherJob {
            signed_for: statement.workflow_id,
        });
    }
    if cx.review_id.is_empty() || statement.review_id != cx.review_id {
        return Err(Refusal::OtherReview {
            signed_for: statement.review_id,
            open: cx.review_id.to_owned(),
        });
    }
    if statement.comment.len() > MAX_COMMENT_BYTES {
        return Err(Refusal::Malformed(format!(
            "the comment is over {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let starter = cx.starter.and_then(|s| {
        let (st, k) = keyring.verify(s).ok()?;
        // Signed for this job, when it started: a start copied from an earlier run of the
        // same workflow id (ids are predictable) proves nothing about this one.
        let signed_then = st.signed_at_ms >= cx.started_at_ms.saturating_sub(START_SKEW_MS)
            && st.signed_at_ms <= cx.started_at_ms.saturating_add(START_SKEW_MS);
        (st.purpose == Purpose::Start && st.workflow_id == cx.workflow_id && signed_then)
            .then(|| k.name.clone())
    });
    if cx.four_eyes && cx.purpose == Purpose::Review && statement.approve {
        match &starter {
            None => return Err(Refusal::UnverifiedStarter),
            Some(s) if *s == key.name => {
                return Err(Refusal::SelfApproval {
                    reviewer: key.name.clone(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(VerifiedReview {
        approve: statement.approve,
        comment: statement.comment,
        reviewer: key.name.clone(),
        key_fingerprint: key.fingerprint.clone(),
        starter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[&ReviewerKey]) -> Keyring {
        let text: Vec<String> = keys.iter().map(|k| k.public_line()).collect();
        Keyring::parse(&text.join("\n"), "test").unwrap()
    }

    fn cx<'a>(starter: Option<&'a SignedStatement>, four_eyes: bool) -> ReviewContext<'a> {
        ReviewContext {
            workflow_id: "reindex-Chunks-m1",
            review_id: "run-1/40",
            purpose: Purpose::Review,
            starter,
            started_at_ms: now_ms(),
            four_eyes,
        }
    }

    fn approval(key: &ReviewerKey) -> serde_json::Value {
        let s = key.sign(&Statement::review(
            "reindex-Chunks-m1",
            "run-1/40",
            true,
            "ok",
        ));
        serde_json::to_value(s).unwrap()
    }

    #[test]
    fn a_signed_review_by_a_trusted_key_is_taken_with_its_fingerprint() {
        let ana = ReviewerKey::generate("ana").unwrap();
        let v = check_review(&ring(&[&ana]), &approval(&ana), cx(None, false)).unwrap();
        assert!(v.approve);
        assert_eq!(v.reviewer, "ana");
        assert_eq!(v.key_fingerprint, ana.fingerprint());
        assert!(v.key_fingerprint.starts_with("SHA256:"));
        assert_eq!(v.comment, "ok");
    }

    #[test]
    fn unsigned_unknown_tampered_and_misdirected_reviews_are_refused() {
        let ana = ReviewerKey::generate("ana").unwrap();
        let eve = ReviewerKey::generate("eve").unwrap();
        let keys = ring(&[&ana]);
        let refused = |v: serde_json::Value| check_review(&keys, &v, cx(None, false)).unwrap_err();
        // The old, unsigned payload (what the stock CLI sent before).
        assert_eq!(
            refused(serde_json::json!({"approve": true, "reviewer": "ana"})),
            Refusal::Unsigned
        );
        assert!(matches!(
            refused(serde_json::json!("approve")),
            Refusal::Malformed(_)
        ));
        assert!(matches!(
            refused(approval(&eve)),
            Refusal::UnknownKey { fingerprint } if fingerprint == eve.fingerprint()
        ));
        // A reject re-labelled as an approval: the signature no longer matches.
        let mut tampered = ana.sign(&Statement::review(
            "reindex-Chunks-m1",
            "run-1/40",
            false,
            "",
        ));
        tampered.statement = tampered
            .statement
            .replace("\"approve\":false", "\"approve\":true");
        assert!(matches!(
            refused(serde_json::to_value(&tampered).unwrap()),
            Refusal::BadSignature { .. }
        ));
        // Eve's signature under Ana's public key.
        let mut forged = eve.sign(&Statement::review(
            "reindex-Chunks-m1",
            "run-1/40",
            true,
            "",
        ));
        forged.public_key = ana.sign(&Statement::start("x")).public_key;
        assert!(matches!(
            refused(serde_json::to_value(&forged).unwrap()),
            Refusal::BadSignature { .. }
        ));
        let other_job = ana.sign(&Statement::review(
            "reindex-Chunks-m2",
            "run-1/40",
            true,
            "",
        ));
        assert!(matches!(
            refused(serde_json::to_value(other_job).unwrap()),
            Refusal::OtherJob { .. }
        ));
        // An approval captured from an earlier review of the same job id.
        let earlier = ana.sign(&Statement::review(
            "reindex-Chunks-m1",
            "run-0/40",
            true,
            "",
        ));
        assert!(matches!(
            refused(serde_json::to_value(earlier).unwrap()),
            Refusal::OtherReview { .. }
        ));
        let start = ana.sign(&Statement::start("reindex-Chunks-m1"));
        assert_eq!(
            refused(serde_json::to_value(start).unwrap()),
            Refusal::WrongPurpose(Purpose::Start)
        );
    }

    #[test]
    fn four_eyes_refuses_the_starters_approval_but_not_a_colleagues() {
        let ana = ReviewerKey::generate("ana").unwrap();
        let bo = ReviewerKey::generate("bo").unwrap();
        let keys = ring(&[&ana, &bo]);
        let started = ana.sign(&Statement::start("reindex-Chunks-m1"));
        assert_eq!(
            check_review(&keys, &approval(&ana), cx(Some(&started), true)).unwrap_err(),
            Refusal::SelfApproval {
                reviewer: "ana".into()
            }
        );
        let v = check_review(&keys, &approval(&bo), cx(Some(&started), true)).unwrap();
        assert_eq!(v.starter.as_deref(), Some("ana"));
        // Without four-eyes the starter may approve; with it, an unsigned start proves
        // nothing about who started.
        assert!(check_review(&keys, &approval(&ana), cx(Some(&started), false)).is_ok());
        assert_eq!(
            check_review(&keys, &approval(&bo), cx(None, true)).unwrap_err(),
            Refusal::UnverifiedStarter
        );
        // A start signed for another job does not count as this one's; nor does one signed
        // for an earlier run of this id (copied from its history into a new start).
        let elsewhere = ana.sign(&Statement::start("reindex-Chunks-m2"));
        assert_eq!(
            check_review(&keys, &approval(&bo), cx(Some(&elsewhere), true)).unwrap_err(),
            Refusal::UnverifiedStarter
        );
        let mut earlier = Statement::start("reindex-Chunks-m1");
        earlier.signed_at_ms -= 3_600_000;
        let replayed = bo.sign(&earlier);
        assert_eq!(
            check_review(&keys, &approval(&ana), cx(Some(&replayed), true)).unwrap_err(),
            Refusal::UnverifiedStarter,
            "bo's start of an earlier run does not make ana's start of this one bo's"
        );
        // Rejecting one's own job is always allowed.
        let reject = ana.sign(&Statement::review(
            "reindex-Chunks-m1",
            "run-1/40",
            false,
            "",
        ));
        assert!(
            check_review(
                &keys,
                &serde_json::to_value(reject).unwrap(),
                cx(Some(&started), true)
            )
            .is_ok()
        );
    }

    #[test]
    fn a_rollback_is_signed_for_the_approved_review_and_only_counts_as_one() {
        let ana = ReviewerKey::generate("ana").unwrap();
        let keys = ring(&[&ana]);
        let rollback = ReviewContext {
            purpose: Purpose::Rollback,
            ..cx(None, true)
        };
        let signed = |s: Statement| serde_json::to_value(ana.sign(&s)).unwrap();
        let v = check_review(
            &keys,
            &signed(Statement::rollback(
                "reindex-Chunks-m1",
                "run-1/40",
                "worse",
            )),
            rollback,
        )
        .unwrap();
        assert_eq!((v.reviewer.as_str(), v.approve), ("ana", false));
        // An approval is not a rollback, nor the reverse; a rollback of another approval
        // (an earlier run) does not count.
        assert_eq!(
            check_review(&keys, &approval(&ana), rollback).unwrap_err(),
            Refusal::WrongPurpose(Purpose::Review)
        );
        assert_eq!(
            check_review(
                &keys,
                &signed(Statement::rollback("reindex-Chunks-m1", "run-1/40", "")),
                cx(None, false)
            )
            .unwrap_err(),
            Refusal::WrongPurpose(Purpose::Rollback)
        );
        assert!(matches!(
            check_review(
                &keys,
                &signed(Statement::rollback("reindex-Chunks-m1", "run-0/40", "")),
                rollback
            )
            .unwrap_err(),
            Refusal::OtherReview { .. }
        ));
    }

    #[test]
    fn key_files_round_trip_and_a_readable_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ana = ReviewerKey::generate("ana").unwrap();
        let path = dir.path().join("ana.key");
        ana.write(&path).unwrap();
        assert!(ana.write(&path).is_err(), "never overwrites");
        let loaded = ReviewerKey::load(&path).unwrap();
        assert_eq!(loaded.fingerprint(), ana.fingerprint());
        assert_eq!(loaded.name(), "ana");
        assert!(!format!("{loaded:?}").contains(&STANDARD.encode(ana.key.to_bytes())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                ReviewerKey::load(&path),
                Err(KeyError::Exposed { .. })
            ));
        }
        // The public line is what authorized_keys takes; the secret file is not.
        let keys = Keyring::parse(&format!("# team\n{}\n", ana.public_line()), "a").unwrap();
        assert_eq!(keys.len(), 1);
        let secret = std::fs::read_to_string(&path).unwrap();
        assert!(Keyring::parse(&secret, "a").is_err());
        assert!(
            Keyring::parse(&format!("{0}\n{0}", ana.public_line()), "a").is_err(),
            "a key listed twice"
        );
        assert!(ReviewerKey::generate("a b").is_err());
        assert!(ReviewerKey::generate("").is_err());
    }
}
