//! Who a WebSocket or SSE connection is ([`Identity`]) and what it may do on a channel: the
//! `[auth.channel_defaults]` and `[[auth.namespaces]]` rules per action (subscribe, publish,
//! history, presence), each `any`, `authenticated` or `claim`.
//!
//! A pattern subscription is allowed only if the rule of every namespace it can reach allows
//! it; where that rule is `claim`, one pattern of the token's `channels` claim must cover the
//! whole subscribed pattern ([`Pattern::covers`]), so a pattern can never deliver a channel the
//! connection could not subscribe to by name. Deliveries are therefore never filtered.

use std::collections::HashMap;
use std::sync::Arc;

use pulsewire_model::{ChannelName, Pattern, TenantId, is_pattern};

use crate::auth::{Principal, Scope};
use crate::config::{Access, AuthConfig, ChannelPermissions};
use crate::jwt::TokenClaims;

/// Who a connection is.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Authentication is disabled: everything is allowed, in the default tenant.
    Open,
    /// Authentication is enabled and the connection has presented nothing (yet): only what
    /// namespaces open to `any`, in `auth.anonymous_tenant`.
    Anonymous(TenantId),
    /// An API key: its tenant, and its scopes (`read`, `publish`) decide.
    Key(Principal),
    /// A connection token.
    Token(Arc<TokenClaims>),
}

impl Identity {
    pub fn tenant(&self) -> TenantId {
        match self {
            Identity::Open => TenantId::default_tenant(),
            Identity::Anonymous(t) => t.clone(),
            Identity::Key(p) => p.tenant.clone(),
            Identity::Token(c) => c.tenant.clone(),
        }
    }

    pub fn user(&self) -> Option<&str> {
        match self {
            Identity::Token(c) => Some(&c.sub),
            _ => None,
        }
    }

    /// The token's `exp`, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> Option<u64> {
        match self {
            Identity::Token(c) => Some(c.exp),
            _ => None,
        }
    }
}

/// What a command does to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Publish,
    History,
    Presence,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Subscribe => "subscribe",
            Action::Publish => "publish",
            Action::History => "history",
            Action::Presence => "presence",
        }
    }

    fn of(self, p: &ChannelPermissions) -> Access {
        match self {
            Action::Subscribe => p.subscribe,
            Action::Publish => p.publish,
            Action::History => p.history,
            Action::Presence => p.presence,
        }
    }
}

/// The rules of `[auth]`, indexed by namespace.
pub struct Permissions {
    defaults: ChannelPermissions,
    by_namespace: HashMap<String, ChannelPermissions>,
}

impl Permissions {
    pub fn new(cfg: &AuthConfig) -> Permissions {
        Permissions {
            defaults: cfg.channel_defaults.clone(),
            by_namespace: cfg
                .namespaces
                .iter()
                .map(|n| (n.name.clone(), n.permissions()))
                .collect(),
        }
    }

    /// True if some rule lets connections without credentials do something.
    pub fn anonymous_possible(&self) -> bool {
        std::iter::once(&self.defaults)
            .chain(self.by_namespace.values())
            .any(|p| [p.subscribe, p.publish, p.history, p.presence].contains(&Access::Any))
    }

    fn rule(&self, namespace: &str) -> &ChannelPermissions {
        self.by_namespace.get(namespace).unwrap_or(&self.defaults)
    }

    /// Checks one channel name or pattern; the message says why not. Names that do not follow
    /// the grammar pass here and are refused by the hub with `bad_channel`.
    pub fn check(&self, who: &Identity, action: Action, name: &str) -> Result<(), String> {
        if matches!(who, Identity::Open) {
            return Ok(());
        }
        // The audit channel (and any pattern reaching it) is an admin's only, whatever the
        // namespace rules say; the server alone publishes on it.
        if crate::audit::reaches_audit(name) && !is_admin(who) {
            return Err(format!(
                "{name:?}: the audit channel needs an API key with the `admin` scope or a token with the `admin` role"
            ));
        }
        let target = if is_pattern(name) {
            match Pattern::parse(name) {
                Ok(p) => p,
                Err(_) => return Ok(()),
            }
        } else {
            match ChannelName::parse(name) {
                // A name is the pattern that matches only itself.
                Ok(c) => match Pattern::parse(c.as_str()) {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                },
                Err(_) => return Ok(()),
            }
        };
        // The namespaces the name or pattern can reach: its first segment when that is literal
        // and more segments follow; for a pattern starting with a wildcard, every namespace
        // (the listed ones, the unlisted ones under the defaults, and `""`).
        let reach: Vec<&ChannelPermissions> = match (target.literal_prefix(), name.contains(':')) {
            (Some(ns), true) => vec![self.rule(ns)],
            (Some(_), false) => vec![self.rule("")],
            (None, _) => std::iter::once(&self.defaults)
                .chain(self.by_namespace.values())
                .collect(),
        };
        for rule in reach {
            allowed(who, action, action.of(rule), &target).map_err(|why| format!("{name:?}: {why}"))?;
        }
        Ok(())
    }
}

/// An API key with the `admin` scope, or a token with the `admin` role.
pub fn is_admin(who: &Identity) -> bool {
    match who {
        Identity::Open => true,
        Identity::Anonymous(_) => false,
        Identity::Key(p) => p.scopes.contains(&Scope::Admin),
        Identity::Token(c) => c.is_admin(),
    }
}

fn allowed(who: &Identity, action: Action, access: Access, target: &Pattern) -> Result<(), String> {
    if access == Access::Any {
        return Ok(());
    }
    match who {
        Identity::Open => Ok(()),
        Identity::Anonymous(_) => Err(format!("{} needs authentication here", action.as_str())),
        Identity::Key(p) => {
            let scope = if action == Action::Publish {
                Scope::Publish
            } else {
                Scope::Read
            };
            if p.scopes.contains(&scope) {
                Ok(())
            } else {
                Err(format!(
                    "this connection's API key lacks the `{}` scope",
                    scope.as_str()
                ))
            }
        }
        Identity::Token(c) => {
            if access == Access::Authenticated || c.is_admin() {
                return Ok(());
            }
            let (claim, list) = if action == Action::Publish {
                ("publish", &c.publish)
            } else {
                ("channels", &c.channels)
            };
            if list.iter().any(|p| p.covers(target)) {
                Ok(())
            } else {
                Err(format!(
                    "{} needs a token whose `{claim}` claim covers it",
                    action.as_str()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespacePermissions;

    fn ns(name: &str, subscribe: Access, publish: Access, history: Access, presence: Access) -> NamespacePermissions {
        NamespacePermissions {
            name: name.into(),
            subscribe,
            publish,
            history,
            presence,
        }
    }

    fn perms() -> Permissions {
        use Access::*;
        Permissions::new(&AuthConfig {
            namespaces: vec![
                ns("public", Any, Authenticated, Any, Authenticated),
                ns("chat", Claim, Claim, Claim, Claim),
            ],
            ..AuthConfig::default()
        })
    }

    fn token(channels: &[&str], publish: &[&str], roles: &[&str]) -> Identity {
        Identity::Token(Arc::new(TokenClaims {
            sub: "u".into(),
            tenant: TenantId::new("t"),
            exp: 0,
            channels: channels.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
            publish: publish.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }))
    }

    #[test]
    fn rules_by_identity() {
        let p = perms();
        let anon = Identity::Anonymous(TenantId::default_tenant());
        assert!(p.anonymous_possible());
        assert!(p.check(&anon, Action::Subscribe, "public:news").is_ok());
        assert!(p.check(&anon, Action::History, "public:news").is_ok());
        assert!(p.check(&anon, Action::Publish, "public:news").is_err());
        assert!(p.check(&anon, Action::Subscribe, "other:x").is_err());
        assert!(p.check(&anon, Action::Subscribe, "plain").is_err());

        let t = token(&["chat:room1", "chat:team:>"], &["chat:room1"], &[]);
        assert!(p.check(&t, Action::Subscribe, "chat:room1").is_ok());
        assert!(p.check(&t, Action::Subscribe, "chat:room2").is_err());
        assert!(p.check(&t, Action::Subscribe, "chat:team:*").is_ok());
        assert!(
            p.check(&t, Action::Subscribe, "chat:*").is_err(),
            "would reach chat:room2"
        );
        assert!(p.check(&t, Action::Publish, "chat:room1").is_ok());
        assert!(p.check(&t, Action::Publish, "chat:team:a").is_err());
        assert!(p.check(&t, Action::Presence, "chat:team:a").is_ok());
        assert!(p.check(&t, Action::History, "chat:room2").is_err());
        assert!(
            p.check(&t, Action::Subscribe, "other:x").is_ok(),
            "defaults: authenticated"
        );
        // A wildcard first segment reaches `chat` too, so it needs a claim covering it.
        assert!(p.check(&t, Action::Subscribe, "*:room1").is_err());
        assert!(p.check(&token(&[">"], &[], &[]), Action::Subscribe, "*:room1").is_ok());
        assert!(
            p.check(&token(&[], &[], &["admin"]), Action::Publish, "chat:any")
                .is_ok()
        );

        let read_key = Identity::Key(Principal {
            tenant: TenantId::new("t"),
            scopes: vec![Scope::Read],
            key_id: "k".into(),
            name: String::new(),
        });
        assert!(p.check(&read_key, Action::Subscribe, "chat:room9").is_ok());
        assert!(p.check(&read_key, Action::Publish, "chat:room9").is_err());
        assert!(p.check(&read_key, Action::Publish, "other:x").is_err());
        assert!(p.check(&Identity::Open, Action::Publish, "chat:x").is_ok());
    }

    #[test]
    fn no_anonymous_access_by_default() {
        assert!(!Permissions::new(&AuthConfig::default()).anonymous_possible());
    }
}
