//! JWT connection tokens for WebSocket and SSE: the keys they may be signed with (from the
//! configuration and a JWKS file re-read when it changes), verification with the algorithm pinned
//! by the key, and the claims a connection acts on (`sub`, `tenant`, `channels`, `publish`,
//! `roles`). Checking what a connection may do with those claims is `permissions.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use pulsewire_model::{Pattern, TenantId};
use serde::Deserialize;

use crate::config::JwtConfig;

/// What a verified token says about its connection.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClaims {
    pub sub: String,
    pub tenant: TenantId,
    /// Seconds since the Unix epoch.
    pub exp: u64,
    /// Patterns (or names) the connection may subscribe to, read the history and the presence of,
    /// where a namespace says `claim`.
    pub channels: Vec<Pattern>,
    /// Patterns (or names) the connection may publish on, where a namespace says `claim`.
    pub publish: Vec<Pattern>,
    pub roles: Vec<String>,
}

impl TokenClaims {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// Why a token was refused. `Expired` gets its own codes (HTTP `token_expired`, close 4002).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid(String),
}

impl TokenError {
    pub fn message(&self) -> String {
        match self {
            TokenError::Expired => "the connection token has expired".into(),
            TokenError::Invalid(why) => format!("invalid connection token: {why}"),
        }
    }
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: String,
    exp: u64,
    tenant: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// One verification key and the one algorithm it accepts.
#[derive(Clone)]
struct Key {
    alg: Algorithm,
    key: Arc<DecodingKey>,
}

/// The keys of `[auth.jwt]`: fixed ones (by algorithm, for tokens without `kid`) and the JWKS
/// file's (by `kid`).
pub struct Verifier {
    by_alg: HashMap<Algorithm, Key>,
    jwks: Option<JwksFile>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    default_tenant: Option<TenantId>,
}

/// The JWKS file, re-read when its modification time or size changes (checked at most once a
/// second), like the keys file.
struct JwksFile {
    path: PathBuf,
    cache: Mutex<JwksCache>,
}

struct JwksCache {
    checked: Instant,
    stamp: Option<(SystemTime, u64)>,
    by_kid: HashMap<String, Key>,
}

const RECHECK: Duration = Duration::from_secs(1);

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads a JWKS file: every key needs a `kid`; its algorithm is its `alg`, or follows from the
/// key type (RSA: RS256, EC P-256: ES256, OKP Ed25519: EdDSA, oct: HS256). Keys of other
/// algorithms are refused, so the file cannot widen what is accepted.
fn read_jwks(path: &Path) -> anyhow::Result<HashMap<String, Key>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let set: JwkSet =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a JWKS (a `keys` array)", path.display()))?;
    let mut out = HashMap::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk
            .common
            .key_id
            .clone()
            .with_context(|| format!("{}: key {i} has no `kid`", path.display()))?;
        let alg = match jwk.common.key_algorithm {
            Some(a) => <Algorithm as std::str::FromStr>::from_str(&a.to_string())
                .ok()
                .with_context(|| format!("{}: key {kid:?} has an unsupported `alg`", path.display()))?,
            None => match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
                AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
                _ => anyhow::bail!(
                    "{}: key {kid:?} has a key type Pulsewire does not accept",
                    path.display()
                ),
            },
        };
        if !ACCEPTED.contains(&alg) {
            anyhow::bail!(
                "{}: key {kid:?}: {alg:?} is not accepted (HS256, RS256, ES256, EdDSA)",
                path.display()
            );
        }
        let key =
            DecodingKey::from_jwk(jwk).with_context(|| format!("{}: key {kid:?} is not valid", path.display()))?;
        if key.family() != alg.family() {
            anyhow::bail!("{}: key {kid:?} does not fit its `alg` {alg:?}", path.display());
        }
        if out
            .insert(
                kid.clone(),
                Key {
                    alg,
                    key: Arc::new(key),
                },
            )
            .is_some()
        {
            anyhow::bail!("{}: `kid` {kid:?} is used twice", path.display());
        }
    }
    Ok(out)
}

/// The only algorithms Pulsewire verifies.
const ACCEPTED: [Algorithm; 4] = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

impl JwksFile {
    fn key(&self, kid: &str) -> Option<Key> {
        let mut cache = self.cache.lock();
        if cache.checked.elapsed() >= RECHECK {
            cache.checked = Instant::now();
            let now = stamp(&self.path);
            if now != cache.stamp {
                match read_jwks(&self.path) {
                    Ok(keys) => {
                        tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS file reloaded");
                        cache.by_kid = keys;
                        cache.stamp = now;
                    }
                    Err(e) => tracing::warn!("keeping the previous JWKS keys: {e:#}"),
                }
            }
        }
        cache.by_kid.get(kid).cloned()
    }
}

impl Verifier {
    /// Loads the configured keys; `None` when none is configured (tokens are not accepted).
    /// A key file that cannot be read or parsed is an error at start.
    pub fn from_config(cfg: &JwtConfig) -> anyhow::Result<Option<Verifier>> {
        if !cfg.has_keys() {
            return Ok(None);
        }
        let mut by_alg = HashMap::new();
        if !cfg.hmac_secret.is_empty() {
            let key = DecodingKey::from_secret(cfg.hmac_secret.as_bytes());
            by_alg.insert(
                Algorithm::HS256,
                Key {
                    alg: Algorithm::HS256,
                    key: Arc::new(key),
                },
            );
        }
        type Loader = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
        let files: [(&PathBuf, Algorithm, Loader, &str); 3] = [
            (
                &cfg.rsa_public_key_file,
                Algorithm::RS256,
                DecodingKey::from_rsa_pem,
                "rsa_public_key_file",
            ),
            (
                &cfg.ecdsa_public_key_file,
                Algorithm::ES256,
                DecodingKey::from_ec_pem,
                "ecdsa_public_key_file",
            ),
            (
                &cfg.ed25519_public_key_file,
                Algorithm::EdDSA,
                DecodingKey::from_ed_pem,
                "ed25519_public_key_file",
            ),
        ];
        for (path, alg, load, name) in files {
            if path.as_os_str().is_empty() {
                continue;
            }
            let pem =
                std::fs::read(path).with_context(|| format!("auth.jwt.{name}: cannot read {}", path.display()))?;
            let key = load(&pem)
                .map_err(|e| anyhow::anyhow!("auth.jwt.{name}: {} is not a usable key: {e}", path.display()))?;
            by_alg.insert(
                alg,
                Key {
                    alg,
                    key: Arc::new(key),
                },
            );
        }
        let jwks = if cfg.jwks_file.as_os_str().is_empty() {
            None
        } else {
            let path = cfg.jwks_file.clone();
            let by_kid = read_jwks(&path).context("auth.jwt.jwks_file")?;
            Some(JwksFile {
                cache: Mutex::new(JwksCache {
                    checked: Instant::now(),
                    stamp: stamp(&path),
                    by_kid,
                }),
                path,
            })
        };
        Ok(Some(Verifier {
            by_alg,
            jwks,
            issuer: Some(cfg.issuer.clone()).filter(|s| !s.is_empty()),
            audience: Some(cfg.audience.clone()).filter(|s| !s.is_empty()),
            leeway: cfg.leeway,
            default_tenant: Some(cfg.default_tenant.clone())
                .filter(|s| !s.is_empty())
                .map(|t| TenantId::new(&t)),
        }))
    }

    /// Clock skew allowed on `exp` and `nbf`.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies a token: the key is chosen by `kid` (JWKS) or, without one, by the header's
    /// algorithm among the configured keys, and only that key's algorithm is accepted; then
    /// signature, `exp` (required), `nbf`, `iss` and `aud`, then the claims.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let invalid = |s: &str| TokenError::Invalid(s.to_owned());
        // `alg: none` and unknown algorithms fail here: the header's `alg` must be one the
        // library implements, and `none` is not one.
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(format!("bad header: {e}")))?;
        let key = match &header.kid {
            Some(kid) => self
                .jwks
                .as_ref()
                .and_then(|j| j.key(kid))
                .ok_or_else(|| TokenError::Invalid(format!("unknown key id {kid:?}")))?,
            None => self
                .by_alg
                .get(&header.alg)
                .cloned()
                .ok_or_else(|| TokenError::Invalid(format!("{:?} tokens are not accepted here", header.alg)))?,
        };
        if header.alg != key.alg {
            return Err(TokenError::Invalid(format!(
                "the token says {:?} but its key is for {:?}",
                header.alg, key.alg
            )));
        }
        let mut v = Validation::new(key.alg);
        v.algorithms = vec![key.alg];
        v.leeway = self.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                v.required_spec_claims.insert("iss".into());
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.required_spec_claims.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<RawClaims>(token, &key.key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => invalid("not valid yet (nbf)"),
            ErrorKind::InvalidSignature => invalid("bad signature"),
            ErrorKind::InvalidAlgorithm => invalid("algorithm not accepted for this key"),
            ErrorKind::InvalidIssuer => invalid("wrong issuer"),
            ErrorKind::InvalidAudience => invalid("wrong audience"),
            ErrorKind::MissingRequiredClaim(c) => TokenError::Invalid(format!("missing claim `{c}`")),
            other => TokenError::Invalid(format!("{other:?}")),
        })?;
        let raw = data.claims;
        if raw.sub.is_empty() {
            return Err(invalid("missing claim `sub`"));
        }
        let tenant = match raw.tenant {
            Some(t) => {
                crate::auth::check_tenant(&t).map_err(TokenError::Invalid)?;
                TenantId::new(&t)
            }
            None => self
                .default_tenant
                .clone()
                .ok_or_else(|| invalid("missing claim `tenant` (and no auth.jwt.default_tenant)"))?,
        };
        let patterns = |claim: &str, list: Vec<String>| -> Result<Vec<Pattern>, TokenError> {
            list.iter()
                .map(|p| Pattern::parse(p).map_err(|e| TokenError::Invalid(format!("claim `{claim}`: {p:?}: {e}"))))
                .collect()
        };
        Ok(TokenClaims {
            sub: raw.sub,
            tenant,
            exp: raw.exp,
            channels: patterns("channels", raw.channels)?,
            publish: patterns("publish", raw.publish)?,
            roles: raw.roles,
        })
    }
}

/// True if `credential` has the shape of a JWT (three base64url parts), as opposed to an API key.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3 && !credential.starts_with("pw_")
}

/// Seconds since the Unix epoch now.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How long from now until the Unix time `at` (seconds); zero if it has passed.
pub fn until_unix(at: u64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(at).saturating_sub(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn fixture(name: &str) -> PathBuf {
        Path::new(FIXTURES).join(name)
    }

    fn pem(name: &str) -> Vec<u8> {
        std::fs::read(fixture(name)).unwrap()
    }

    fn config() -> JwtConfig {
        JwtConfig {
            hmac_secret: SECRET.into(),
            rsa_public_key_file: fixture("rsa1.pub.pem"),
            ecdsa_public_key_file: fixture("ec.pub.pem"),
            ed25519_public_key_file: fixture("ed.pub.pem"),
            leeway: Duration::ZERO,
            ..JwtConfig::default()
        }
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({"sub": "alice", "tenant": "acme", "exp": now_unix() + 60});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c
    }

    fn sign(alg: Algorithm, key: &EncodingKey, c: &serde_json::Value) -> String {
        encode(&Header::new(alg), c, key).unwrap()
    }

    #[test]
    fn every_algorithm_verifies_with_its_key() {
        let v = Verifier::from_config(&config()).unwrap().unwrap();
        let c = claims(json!({"channels": ["chat:>"], "publish": ["chat:room"], "roles": ["admin"]}));
        let keys = [
            (Algorithm::HS256, EncodingKey::from_secret(SECRET.as_bytes())),
            (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&pem("rsa1.key.pem")).unwrap(),
            ),
            (Algorithm::ES256, EncodingKey::from_ec_pem(&pem("ec.key.pem")).unwrap()),
            (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem("ed.key.pem")).unwrap()),
        ];
        for (alg, key) in &keys {
            let got = v
                .verify(&sign(*alg, key, &c))
                .unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
            assert_eq!((got.sub.as_str(), got.tenant.as_str()), ("alice", "acme"));
            assert_eq!(got.channels[0].as_str(), "chat:>");
            assert_eq!(got.publish[0].as_str(), "chat:room");
            assert!(got.is_admin());
        }
        // Signed by another key of the same algorithm: refused.
        let other_rsa = EncodingKey::from_rsa_pem(&pem("rsa2.key.pem")).unwrap();
        assert_eq!(
            v.verify(&sign(Algorithm::RS256, &other_rsa, &c)),
            Err(TokenError::Invalid("bad signature".into()))
        );
        let other_hmac = EncodingKey::from_secret(b"another secret of thirty-two bytes!!");
        assert!(v.verify(&sign(Algorithm::HS256, &other_hmac, &c)).is_err());
    }

    #[test]
    fn refusals_name_their_reason() {
        let v = Verifier::from_config(&config()).unwrap().unwrap();
        let hs = EncodingKey::from_secret(SECRET.as_bytes());
        let expired = claims(json!({"exp": now_unix() - 10}));
        assert_eq!(
            v.verify(&sign(Algorithm::HS256, &hs, &expired)),
            Err(TokenError::Expired)
        );
        let early = claims(json!({"nbf": now_unix() + 60}));
        assert_eq!(
            v.verify(&sign(Algorithm::HS256, &hs, &early)),
            Err(TokenError::Invalid("not valid yet (nbf)".into()))
        );
        let no_exp = json!({"sub": "a", "tenant": "acme"});
        assert!(
            matches!(v.verify(&sign(Algorithm::HS256, &hs, &no_exp)), Err(TokenError::Invalid(m)) if m.contains("exp"))
        );
        let no_tenant = json!({"sub": "a", "exp": now_unix() + 60});
        assert!(
            matches!(v.verify(&sign(Algorithm::HS256, &hs, &no_tenant)), Err(TokenError::Invalid(m)) if m.contains("tenant"))
        );
        let bad_pattern = claims(json!({"channels": ["a:>:b"]}));
        assert!(v.verify(&sign(Algorithm::HS256, &hs, &bad_pattern)).is_err());
        // HS384 is not pinned anywhere.
        let hs384 = encode(&Header::new(Algorithm::HS384), &claims(json!({})), &hs).unwrap();
        assert!(v.verify(&hs384).is_err());
        // A kid with no JWKS configured.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        assert_eq!(
            v.verify(&encode(&h, &claims(json!({})), &hs).unwrap()),
            Err(TokenError::Invalid("unknown key id \"k1\"".into()))
        );
    }

    #[test]
    fn alg_none_and_the_public_key_as_hmac_secret_are_refused() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let v = Verifier::from_config(&config()).unwrap().unwrap();
        let body = b64.encode(claims(json!({})).to_string());
        for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#, r#"{"typ":"JWT"}"#] {
            let token = format!("{}.{body}.", b64.encode(header));
            assert!(v.verify(&token).is_err(), "{header}");
        }
        // The classic confusion: an HS256 token keyed with the RSA public key's PEM. The HS256
        // key is the configured secret, so the signature does not verify.
        let confused = EncodingKey::from_secret(&pem("rsa1.pub.pem"));
        assert!(
            v.verify(&sign(Algorithm::HS256, &confused, &claims(json!({}))))
                .is_err()
        );
        // And where HS256 is not configured at all, it is not accepted.
        let rsa_only = Verifier::from_config(&JwtConfig {
            hmac_secret: String::new(),
            ..config()
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            rsa_only.verify(&sign(Algorithm::HS256, &confused, &claims(json!({})))),
            Err(TokenError::Invalid("HS256 tokens are not accepted here".into()))
        );
    }

    #[test]
    fn jwks_keys_are_chosen_by_kid_with_their_algorithm_pinned() {
        let dir = std::env::temp_dir().join(format!("pulsewire-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        let jwk1: serde_json::Value = serde_json::from_slice(&pem("rsa1.jwk.json")).unwrap();
        let jwk2: serde_json::Value = serde_json::from_slice(&pem("rsa2.jwk.json")).unwrap();
        std::fs::write(&path, json!({"keys": [jwk1, jwk2]}).to_string()).unwrap();
        let v = Verifier::from_config(&JwtConfig {
            jwks_file: path.clone(),
            leeway: Duration::ZERO,
            ..JwtConfig::default()
        })
        .unwrap()
        .unwrap();
        for (kid, key) in [("rsa1", "rsa1.key.pem"), ("rsa2", "rsa2.key.pem")] {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some(kid.into());
            let k = EncodingKey::from_rsa_pem(&pem(key)).unwrap();
            assert!(v.verify(&encode(&h, &claims(json!({})), &k).unwrap()).is_ok(), "{kid}");
            // The other kid names the other key: the signature does not match.
            h.kid = Some(if kid == "rsa1" { "rsa2" } else { "rsa1" }.into());
            assert!(v.verify(&encode(&h, &claims(json!({})), &k).unwrap()).is_err());
        }
        // An RSA kid with an HS256 token signed with its public key: the kid pins RS256.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa1".into());
        let confused = EncodingKey::from_secret(&pem("rsa1.pub.pem"));
        assert!(matches!(
            v.verify(&encode(&h, &claims(json!({})), &confused).unwrap()),
            Err(TokenError::Invalid(m)) if m.contains("key is for RS256")
        ));
        // A key without a kid is refused when loading.
        std::fs::write(&path, json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string()).unwrap();
        let err = read_jwks(&path).err().expect("refused");
        assert!(err.to_string().contains("no `kid`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_tenant_fills_a_missing_claim_and_issuer_audience_are_checked() {
        let v = Verifier::from_config(&JwtConfig {
            default_tenant: "shared".into(),
            issuer: "https://id.example".into(),
            audience: "pulsewire".into(),
            ..config()
        })
        .unwrap()
        .unwrap();
        let hs = EncodingKey::from_secret(SECRET.as_bytes());
        let good = json!({"sub": "a", "exp": now_unix() + 60, "iss": "https://id.example", "aud": "pulsewire"});
        assert_eq!(
            v.verify(&sign(Algorithm::HS256, &hs, &good)).unwrap().tenant.as_str(),
            "shared"
        );
        let mut wrong_iss = good.clone();
        wrong_iss["iss"] = json!("https://evil.example");
        assert_eq!(
            v.verify(&sign(Algorithm::HS256, &hs, &wrong_iss)),
            Err(TokenError::Invalid("wrong issuer".into()))
        );
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = json!("other");
        assert_eq!(
            v.verify(&sign(Algorithm::HS256, &hs, &wrong_aud)),
            Err(TokenError::Invalid("wrong audience".into()))
        );
        let mut no_aud = good.clone();
        no_aud.as_object_mut().unwrap().remove("aud");
        assert!(v.verify(&sign(Algorithm::HS256, &hs, &no_aud)).is_err());
    }

    #[test]
    fn shapes() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("pw_abc"));
        assert!(!looks_like_jwt("a.b"));
    }
}
